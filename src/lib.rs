//! gort: a Go-style runtime for Rust.
pub use gort_net as net;
pub use gort_runtime::*;
