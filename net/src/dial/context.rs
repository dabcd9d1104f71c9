//! [`Dialer::dial_context`] (Go's `Dialer.DialContext`): a dial that a [`Context`] can cancel.
//!
//! What: the dial's deadline is the earlier of the dialer's and the context's. An
//! `after_func` on the context cancels a [`Cancel`] that the dial carries through each step:
//! a name lookup stops being waited for (the lookup itself runs on, on the blocking pool, as
//! it does when a deadline passes), a connect in progress has its socket closed, no further
//! address is tried, and Happy Eyeballs racers are cancelled with it (they are its
//! children). The error is Go's `mapErr` of the context's error: `operation was canceled`
//! (`ErrorKind::Interrupted`) for a cancel, `i/o timeout` (`TimedOut`) for a passed deadline,
//! inside the usual `dial tcp ADDR: ...` [`OpError`](crate::OpError).
//!
//! Invariants: the `after_func` is stopped on every return, and it holds the [`Cancel`]
//! weakly, so a context that outlives the dial keeps nothing alive and closes nothing: once a
//! connect has returned, its socket is no longer reachable from the [`Cancel`].
//!
//! Go counterpart: net/dial.go `DialContext` (deadline from the context, `dialSerial`'s
//! `ctx.Done()` checks, `mapErr`). Differences: Go interrupts a connect by moving its
//! deadline into the past; we close the socket. A cancelled unix or UDP dial fails only if
//! the context is done before it starts: neither of them waits.
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use gort_runtime::chan;
use gort_runtime::context::{after_func, Context, ContextError};

use super::{parallel::canceled_error, Cancel, Dialer};
use crate::addr::{resolve, split_host_port, Family};
use crate::conn::Conn;

impl Dialer {
    /// Go's `Dialer.DialContext`: [`Dialer::dial`], cancelled when `ctx` is (see the module
    /// docs). The dial's deadline is the earlier of the dialer's and the context's.
    ///
    /// ```no_run
    /// use gort_net::Dialer;
    /// use gort_runtime::context;
    /// use std::time::Duration;
    ///
    /// let (ctx, cancel) = context::with_timeout(&context::background(), Duration::from_secs(2));
    /// let conn = Dialer::new().dial_context(&ctx, "tcp", "127.0.0.1:8080");
    /// cancel.cancel();
    /// # drop(conn);
    /// ```
    pub fn dial_context(
        &self,
        ctx: &Context,
        network: &str,
        address: &str,
    ) -> io::Result<Box<dyn Conn>> {
        let cancel = Arc::new(Cancel::default());
        let weak = Arc::downgrade(&cancel);
        let watched = ctx.clone();
        let stop = after_func(ctx, move || {
            if let Some(c) = weak.upgrade() {
                c.cancel_with(watched.err() == Some(ContextError::DeadlineExceeded));
            }
        });
        if let Some(e) = ctx.err() {
            cancel.cancel_with(e == ContextError::DeadlineExceeded);
        }
        let deadline = match (self.overall_deadline(), ctx.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let r = self.dial_with(network, address, deadline, Some((ctx, &cancel)));
        stop.stop();
        r
    }
}

/// Resolves `address` for a dial (see `addr::resolve`); with a context, a done context
/// fails it, and a lookup the context cancels is no longer waited for.
pub(super) fn lookup(
    address: &str,
    proto: &'static str,
    fam: Family,
    deadline: Option<Instant>,
    ctx: Option<(&Context, &Cancel)>,
) -> io::Result<Vec<SocketAddr>> {
    let Some((ctx, cancel)) = ctx else {
        return resolve(address, proto, fam, false, deadline);
    };
    let host = match split_host_port(address) {
        Ok((h, _)) if needs_lookup(h) => h.to_string(),
        // No lookup (or a malformed address, which `resolve` reports); a done context fails
        // the dial next, naming the address.
        _ => return resolve(address, proto, fam, false, deadline),
    };
    if cancel.is_cancelled() {
        let e = cancel.error();
        return Err(io::Error::new(e.kind(), format!("lookup {host}: {e}")));
    }
    let (tx, rx) = chan::bounded(1);
    let owned = address.to_string();
    let spawned = gort_runtime::Builder::new()
        .name("dial lookup")
        .spawn(move || {
            // Room for one: never waits; a result nobody wants is dropped.
            let _ = tx.try_send(resolve(&owned, proto, fam, false, deadline));
        });
    if spawned.is_err() {
        // No coroutine to be had: look up here, cancelled only by the deadline.
        return resolve(address, proto, fam, false, deadline);
    }
    let done = ctx.done();
    gort_runtime::select! {
        recv(rx) -> r => r.unwrap_or_else(|_| {
            Err(io::Error::other("the lookup coroutine ended without a result"))
        }),
        recv(done) -> _ => {
            let e = canceled_error(ctx.err() == Some(ContextError::DeadlineExceeded));
            Err(io::Error::new(e.kind(), format!("lookup {host}: {e}")))
        },
    }
}

/// Whether dialing `host` needs a name lookup (see `addr::resolve`'s fast paths).
fn needs_lookup(host: &str) -> bool {
    !(host.is_empty()
        || host.parse::<std::net::IpAddr>().is_ok()
        || host.eq_ignore_ascii_case("localhost"))
}
