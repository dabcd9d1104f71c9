//! Tying a connection's deadlines to a [`Context`] (Go's idiom
//! `stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })`, as net/http
//! uses it).
//!
//! [`bind_context`] sets the connection's deadline to the context's deadline (if any) and,
//! when the context is cancelled, moves the deadline into the past: every operation parked on
//! the connection fails at once with `TimedOut`, and later ones fail without waiting; the
//! caller then reads `ctx.err()` to learn why. Dropping the returned guard (or calling
//! [`ContextGuard::stop`]) detaches the context; deadlines already set stay as they are.
//!
//! Invariant: the guard holds the connection weakly, so a bound context never keeps a
//! connection open.
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use gort_runtime::context::{after_func, AfterFuncStop, Context};

use crate::conn::Conn;

/// Keeps a context bound to a connection; see [`bind_context`].
#[derive(Debug)]
pub struct ContextGuard {
    stop: AfterFuncStop,
}

impl ContextGuard {
    /// Detaches the context; true if the cancellation had not fired yet.
    pub fn stop(&self) -> bool {
        self.stop.stop()
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// A moment safely in the past (Go's `aLongTimeAgo`).
fn long_ago() -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs(1)).unwrap_or(now)
}

/// Applies `ctx`'s deadline to `conn` now and fails its operations once `ctx` is cancelled.
pub fn bind_context<C>(conn: &Arc<C>, ctx: &Context) -> io::Result<ContextGuard>
where
    C: Conn + ?Sized + 'static,
{
    if ctx.is_done() {
        conn.set_deadline(Some(long_ago()))?;
    } else if let Some(d) = ctx.deadline() {
        conn.set_deadline(Some(d))?;
    }
    let weak: Weak<C> = Arc::downgrade(conn);
    let stop = after_func(ctx, move || {
        if let Some(c) = weak.upgrade() {
            let _ = c.set_deadline(Some(long_ago()));
        }
    });
    Ok(ContextGuard { stop })
}
