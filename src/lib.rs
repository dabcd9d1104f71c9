//! gort: a Go-style runtime for Rust.
//!
//! The facade crate: it re-exports `gort-runtime` (coroutines, scheduler, timers, channels,
//! sync, context) at the top level and `gort-net` as [`net`].
#![doc = include_str!("../README.md")]
pub use gort_net as net;
pub use gort_runtime::*;
