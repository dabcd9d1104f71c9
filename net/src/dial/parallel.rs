//! Happy Eyeballs for TCP dials (RFC 6555 "Fast Fallback") as Go does it in net/dial.go:
//! `addrList.partition`, `sysDialer.dialParallel`, and cancelling the loser.
//!
//! What: [`partition`] splits a resolved list holding both families into the primaries (the
//! family of the first address) and the fallbacks (the other family), each in resolver order;
//! a single-family list is not split and the caller dials it serially, with no coroutine.
//! [`dial_parallel`] starts a racer coroutine that dials the primaries with
//! `Dialer::dial_serial` (Go's `partialDeadline` within the group). If they have not connected
//! after the fallback delay, or failed sooner, a second racer dials the fallbacks. The first
//! connection wins; if both racers fail, the primaries' (first) error is returned, as in Go.
//!
//! Invariants:
//! * Racers are coroutines on the caller's runtime (from a plain thread: the default runtime,
//!   which runs the netpoller of every gort socket anyway); the caller waits on a channel,
//!   which parks a coroutine and blocks a plain thread, so both kinds of caller get the race.
//!   If the primary racer cannot be spawned, the whole list is dialed serially instead.
//! * Each racer reports exactly once, on a channel with room for both reports, so a racer
//!   never blocks on sending; a [`Report`] dropped unsent (its coroutine panicked or never
//!   ran) sends an error, so the caller never waits for a report that cannot come.
//! * No fd leak: on every return the caller cancels both racers ([`Cancel`]): the socket a
//!   loser is connecting is closed, which wakes its `connect` at once, and it tries no
//!   further address. A connection that completes anyway is sent to a receiver that is gone
//!   and is dropped (closed) with the failed send or with the channel's buffer.
//! * Both racers dial within the overall deadline, so the race never outlasts it.
//! * A panic in a racer's dial (the dialer's `Control` hook runs there) is caught and resumed
//!   on the caller, as if the caller had dialed serially; the other racer is cancelled as the
//!   caller unwinds. A loser's panic after the race was decided is dropped with its report.
//!
//! Differences from Go: Go cancels the loser through a `context.Context` that moves its
//! connect deadline into the past; here [`Cancel`] closes the socket in `connect`. Go's
//! result channel is unbuffered and a late winner is closed when it sees `returned` closed;
//! here the channel is buffered and the late connection is dropped with it.
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use gort_runtime::chan::{self, RecvTimeoutError, Sender};
use socket2::SockAddr;

use super::Dialer;
use crate::error::op_error;
use crate::sock::Sock;
use crate::tcp::TcpStream;

/// Go's `addrList.partition(isIPv4)`: `(primaries, fallbacks)` when `addrs` holds both
/// families, `None` otherwise (dial serially).
pub(crate) fn partition(addrs: &[SocketAddr]) -> Option<(Vec<SocketAddr>, Vec<SocketAddr>)> {
    let v4 = addrs.first()?.is_ipv4();
    if addrs.iter().all(|a| a.is_ipv4() == v4) {
        return None;
    }
    Some(addrs.iter().partition(|a| a.is_ipv4() == v4))
}

/// Cancels one racer (Go: the racer's `context.WithCancel`). See the module docs.
#[derive(Default)]
pub(crate) struct Cancel {
    st: Mutex<CancelState>,
}

#[derive(Default)]
struct CancelState {
    cancelled: bool,
    /// Cancelled because a deadline passed (a `DialContext` whose context timed out): the
    /// error is Go's `errTimeout` rather than `errCanceled`.
    timed_out: bool,
    /// The racer's socket while it is in `connect`.
    connecting: Option<Weak<Sock>>,
    /// Cancels to cancel with this one (a `DialContext`'s cancel holds its race's two).
    children: Vec<Weak<Cancel>>,
}

impl CancelState {
    /// What a cancelled dial fails with (Go's `mapErr` of the context's error: `errCanceled`,
    /// or `errTimeout` for a passed deadline).
    fn error(&self) -> io::Error {
        canceled_error(self.timed_out)
    }
}

/// Go's `mapErr` of a context's error: `errTimeout` ("i/o timeout", `TimedOut`) for a passed
/// deadline, `errCanceled` ("operation was canceled", `Interrupted`) for a cancel.
pub(crate) fn canceled_error(timed_out: bool) -> io::Error {
    if timed_out {
        gort_runtime::netpoll::timeout_error()
    } else {
        io::Error::new(io::ErrorKind::Interrupted, "operation was canceled")
    }
}

impl Cancel {
    fn lock(&self) -> MutexGuard<'_, CancelState> {
        // Nothing here panics under the lock; a poisoned lock still guards consistent state.
        self.st.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// What a cancelled dial fails with (see [`CancelState::error`]).
    pub(crate) fn error(&self) -> io::Error {
        self.lock().error()
    }

    /// Marks the dial cancelled and closes the socket it is connecting, if any: the parked
    /// `connect` wakes with "use of closed network connection"; the descriptor is released
    /// when that `connect` has left (`Fd::close`). Children are cancelled too.
    pub(crate) fn cancel(&self) {
        self.cancel_with(false);
    }

    /// [`Cancel::cancel`], failing with `i/o timeout` when `timed_out` (unless cancelled
    /// already).
    pub(crate) fn cancel_with(&self, timed_out: bool) {
        let (sock, children) = {
            let mut st = self.lock();
            if !st.cancelled {
                st.cancelled = true;
                st.timed_out = timed_out;
            }
            (st.connecting.take(), std::mem::take(&mut st.children))
        };
        // Outside the lock: a child takes its own.
        if let Some(s) = sock.and_then(|w| w.upgrade()) {
            let _ = s.fd.close();
        }
        for c in children.iter().filter_map(Weak::upgrade) {
            c.cancel_with(timed_out);
        }
    }

    /// Cancels `child` with this one (at once if this one is cancelled already).
    pub(crate) fn add_child(&self, child: &Arc<Cancel>) {
        let timed_out = {
            let mut st = self.lock();
            if !st.cancelled {
                st.children.push(Arc::downgrade(child));
                return;
            }
            st.timed_out
        };
        child.cancel_with(timed_out);
    }

    /// `Sock::connect` that [`Cancel::cancel`] can interrupt. A cancelled racer gets an error
    /// and its socket is dropped (closed), even if it connected.
    pub(crate) fn connect(
        &self,
        sock: Sock,
        addr: &SockAddr,
        deadline: Option<Instant>,
    ) -> io::Result<Sock> {
        let sock = Arc::new(sock);
        {
            let mut st = self.lock();
            if st.cancelled {
                return Err(st.error());
            }
            st.connecting = Some(Arc::downgrade(&sock));
        }
        let r = sock.connect(addr, deadline);
        let cancelled = {
            let mut st = self.lock();
            st.connecting = None;
            st.cancelled.then(|| st.error())
        };
        // `cancel` upgrades the weak reference only under the lock, and it is cleared now: ours
        // is the only strong reference left, so this never fails (an error, not a panic, if
        // it did; the socket is closed when the last reference goes).
        let sock = Arc::try_unwrap(sock).map_err(|_| self.error())?;
        if let Some(e) = cancelled {
            return Err(e);
        }
        r.map(|()| sock)
    }
}

/// The two racers' cancels; dropping it (every return of [`dial_parallel`]) cancels both.
#[derive(Default)]
struct Race {
    primary: Arc<Cancel>,
    fallback: Arc<Cancel>,
}

impl Drop for Race {
    fn drop(&mut self) {
        self.primary.cancel();
        self.fallback.cancel();
    }
}

/// A racer's result: (primary?, the stream or its error), or the payload of a panic in the
/// dial (a `Control` hook's), which the caller resumes as a serial dial would.
type Outcome = (
    bool,
    Result<io::Result<TcpStream>, Box<dyn std::any::Any + Send>>,
);

/// A racer's one report: [`Report::send`], or, dropped unsent (the racer panicked or its
/// coroutine never ran), an error.
struct Report {
    tx: Option<Sender<Outcome>>,
    primary: bool,
    net: &'static str,
}

impl Report {
    fn send(mut self, r: Result<io::Result<TcpStream>, Box<dyn std::any::Any + Send>>) {
        if let Some(tx) = self.tx.take() {
            // The channel has room for both reports, so this never waits. If the race is
            // decided the receiver is gone: the stream comes back in the error and is
            // dropped here, which closes it.
            let _ = tx.try_send((self.primary, r));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let e = io::Error::other("the dialing coroutine ended without a result");
            let _ = tx.try_send((
                self.primary,
                Ok(Err(op_error("dial", self.net, None, None, e))),
            ));
        }
    }
}

/// Starts a racer coroutine dialing `addrs` serially; the error if it cannot be spawned (its
/// report is then an error too).
fn start_racer(
    d: &Dialer,
    addrs: &[SocketAddr],
    deadline: Option<Instant>,
    report: Report,
    cancel: &Arc<Cancel>,
) -> io::Result<()> {
    let (d, addrs, cancel) = (d.clone(), addrs.to_vec(), cancel.clone());
    let name = if report.primary {
        "dial primary"
    } else {
        "dial fallback"
    };
    gort_runtime::Builder::new()
        .name(name)
        .spawn(move || {
            // A panic (in the dialer's `Control` hook) goes to the caller, which resumes it:
            // a racer is the caller's own dial, not a goroutine of its own.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                d.dial_serial(report.net, &addrs, deadline, Some(&cancel))
            }));
            report.send(r);
        })
        .map(drop)
}

/// Go's `dialParallel` for a list that [`partition`] split; see the module docs.
pub(crate) fn dial_parallel(
    d: &Dialer,
    net: &'static str,
    primaries: Vec<SocketAddr>,
    fallbacks: Vec<SocketAddr>,
    deadline: Option<Instant>,
    delay: Duration,
    parent: Option<&Cancel>,
) -> io::Result<TcpStream> {
    let race = Race::default();
    if let Some(p) = parent {
        p.add_child(&race.primary);
        p.add_child(&race.fallback);
    }
    let (tx, rx) = chan::bounded::<Outcome>(2);
    let report = |tx, primary| Report {
        tx: Some(tx),
        primary,
        net,
    };
    if start_racer(
        d,
        &primaries,
        deadline,
        report(tx.clone(), true),
        &race.primary,
    )
    .is_err()
    {
        // No coroutine to be had: dial the whole list here, as with Fast Fallback off.
        drop(race);
        return d.dial_serial(net, &[primaries, fallbacks].concat(), deadline, parent);
    }
    let fallback_at = Instant::now().checked_add(delay);
    // Held until the fallback racer starts (so the channel cannot be closed meanwhile).
    let mut fallback_tx = Some(tx);
    let mut primary_err: Option<io::Error> = None;
    let mut fallback_failed = false;
    loop {
        let got = match (&fallback_tx, fallback_at) {
            (Some(_), Some(t)) => rx.recv_deadline(t),
            _ => rx.recv().map_err(|_| RecvTimeoutError::Closed),
        };
        let timer_fired = matches!(got, Err(RecvTimeoutError::Timeout));
        match got {
            Ok((_, Ok(Ok(conn)))) => return Ok(conn), // `race` cancels the loser
            Ok((true, Ok(Err(e)))) => primary_err = Some(e),
            Ok((false, Ok(Err(_)))) => fallback_failed = true,
            // Unwinding drops `race`, which cancels the other racer.
            Ok((_, Err(panic))) => std::panic::resume_unwind(panic),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Closed) => {
                // Not reached: each racer reports once (see `Report`). An error, not a hang.
                let e = io::Error::other("the dialing coroutines ended without a result");
                return Err(primary_err.unwrap_or_else(|| op_error("dial", net, None, None, e)));
            }
        }
        if fallback_failed {
            if let Some(e) = primary_err {
                return Err(e); // Go returns the primaries' error
            }
        }
        // The fallback starts at its time, or at once when the primaries failed sooner (Go
        // resets the fallback timer to 0).
        if timer_fired || primary_err.is_some() {
            if let Some(tx) = fallback_tx.take() {
                // A spawn failure is reported through the dropped report.
                let _ = start_racer(d, &fallbacks, deadline, report(tx, false), &race.fallback);
            }
        }
    }
}

#[cfg(test)]
mod tests;
