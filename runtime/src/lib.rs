//! gort-runtime: the core of gort.
//!
//! Stackful coroutines (on corosensei) emulate goroutines; an M:N scheduler runs them on
//! worker threads whose loop includes the netpoller (epoll) and timers. See
//! `docs/go-mapping.md` for how each piece maps onto Go's runtime.
#![warn(missing_docs)]

pub(crate) mod blocking;
pub(crate) mod overflow;
pub(crate) mod stack;
