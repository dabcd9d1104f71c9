//! gort-runtime: the core of gort.
//!
//! Stackful coroutines (on corosensei) emulate goroutines; an M:N scheduler runs them on
//! worker threads whose loop includes the netpoller (epoll) and timers. See
//! `docs/go-mapping.md` for how each piece maps onto Go's runtime, and `docs/soundness.md`
//! for why the safe API is sound.
#![warn(missing_docs)]

pub(crate) mod blocking;
pub mod chan;
pub mod context;
mod fdmutex;
pub mod io;
mod join;
mod monitor;
pub mod netpoll;
pub(crate) mod overflow;
mod panic;
pub mod park;
mod registry;
pub mod runtime;
pub(crate) mod sched;
pub mod select;
mod slab;
mod slot;
mod spawn;
pub(crate) mod stack;
pub mod sync;
pub(crate) mod task;
pub mod time;
pub mod timer;
mod timeutil;

pub use join::{JoinError, JoinHandle};
pub use spawn::{
    current, run, spawn, spawn_blocking, spawn_blocking_deadline, spawn_with_buffer, yield_now,
    Builder, CoroutineInfo, MAX_BUFFER,
};
pub use task::WaitReason;
