//! [`serve`]: the accept loop with one coroutine per connection (what `net/http.Server.Serve`
//! does around `Listener.Accept`); [`serve_with_buffer`] gives each a per-connection buffer.
//!
//! What: accepts until the listener fails permanently; on a temporary error (`EMFILE`,
//! `ENFILE`, `ENOBUFS`, `ENOMEM`, `ECONNABORTED`, a timeout) it sleeps 5 ms, doubling up to
//! 1 s, as net/http does, instead of spinning; the delay resets after a successful accept.
//!
//! Invariants: a closed listener ends the loop with `Ok(())` (Go returns `ErrServerClosed`
//! only for http; a raw closed listener is the normal way to stop).
//!
//! Differences from Go: the handler is a closure, not an `http.Handler`.
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::{Conn, Listener};
use crate::error::{is_closed_error, raw_os_error};

/// True for accept errors worth retrying after a pause.
pub fn is_temporary(e: &io::Error) -> bool {
    matches!(
        raw_os_error(e),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    ) || e.kind() == io::ErrorKind::TimedOut
}

/// Runs `handler` in a new coroutine for each accepted connection. Returns `Ok(())` when the
/// listener is closed, or the first permanent accept error.
pub fn serve<L, F>(l: &L, handler: F) -> io::Result<()>
where
    L: Listener + ?Sized,
    F: Fn(Box<dyn Conn>) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    accept_loop(l, |c| {
        let h = handler.clone();
        gort_runtime::spawn(move || h(c));
        Ok(())
    })
}

/// [`serve`] whose handlers also get a zeroed buffer of `len` bytes, kept at the top of their
/// own stack (`gort::spawn_with_buffer`): a handler parked in a read costs about one page,
/// where a `[0u8; 4096]` in its frame costs two (see docs/benchmarks.md).
///
/// Fails with `InvalidInput`, before accepting anything, if `len` is over
/// [`gort_runtime::MAX_BUFFER`]; a coroutine
/// that cannot be spawned ends the loop with its error.
pub fn serve_with_buffer<L, F>(l: &L, len: usize, handler: F) -> io::Result<()>
where
    L: Listener + ?Sized,
    F: Fn(Box<dyn Conn>, &mut [u8]) + Send + Sync + 'static,
{
    if len > gort_runtime::MAX_BUFFER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "serve_with_buffer: a buffer of {len} bytes is over the {} byte limit",
                gort_runtime::MAX_BUFFER
            ),
        ));
    }
    let handler = Arc::new(handler);
    accept_loop(l, |c| {
        let h = handler.clone();
        gort_runtime::Builder::new()
            .spawn_with_buffer(len, move |buf| h(c, buf))
            .map(drop)
    })
}

/// The accept loop of [`serve`]: `start(conn)` for each connection (its error ends the loop).
fn accept_loop<L>(l: &L, start: impl Fn(Box<dyn Conn>) -> io::Result<()>) -> io::Result<()>
where
    L: Listener + ?Sized,
{
    let mut delay = Duration::ZERO;
    loop {
        match l.accept() {
            Ok(c) => {
                delay = Duration::ZERO;
                start(c)?;
            }
            Err(e) if is_closed_error(&e) => return Ok(()),
            Err(e) if is_temporary(&e) => {
                delay = if delay.is_zero() {
                    Duration::from_millis(5)
                } else {
                    (delay * 2).min(Duration::from_secs(1))
                };
                gort_runtime::time::sleep(delay);
            }
            Err(e) => return Err(e),
        }
    }
}
