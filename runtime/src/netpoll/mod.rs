//! The netpoller (Go's `netpoll.go` + `netpoll_epoll.go`).
//!
//! One epoll instance per worker, edge-triggered, one registration per fd for
//! `IN|OUT|RDHUP`. An fd joins an epoll instance at its first wait, and it joins the one of
//! the worker whose coroutine waits (plain threads: a worker picked by descriptor index).
//! Coroutines are pinned to their worker, so a connection served by one coroutine has its
//! readiness delivered to the worker that runs it: no hand-off between workers, no shared
//! poller role, and an idle worker sleeps in its own `epoll_wait` (as the raw epoll server
//! in benches/ does, one epoll per thread). Events for a waiter pinned elsewhere go to that
//! worker's inbox. Each registered fd has a [`PollDesc`] with a read and a write waiter slot.
//! A slot holds `NIL`, `READY` (readiness arrived with nobody waiting), or an [`Unparker`]
//! word (a coroutine or thread waiting). The protocol (Go's `pdReady`/`pdWait`/g states, with
//! `pdWait` made unnecessary by park's token):
//! - waiter: `READY -> NIL` consumes readiness; else `NIL -> me`, re-check close/deadline, park;
//!   after waking, whoever swapped `me` out owns the wake-up.
//! - notifier (epoll event, deadline, close): swaps the slot to `READY` (I/O) or `NIL`
//!   (error), and unparks a waiter it found.
//!
//! `PollDesc`s live in a process-wide slab that is never freed, so a stale epoll event can
//! always be looked up safely; the epoll data word carries `index << 32 | generation`, and
//! the generation changes whenever a descriptor is closed, so events for a closed and reused fd
//! are dropped. An eventfd registered in the same epoll wakes a worker blocked in
//! `epoll_wait` when work arrives for it or a timer is added earlier than its timeout.
//!
//! A runtime that is dropped closes its epoll instances; descriptors that outlive it (a
//! connection made there and used later from a plain thread or another runtime) are marked
//! by `rehome_all`, their parked waiters woken to retry, and their next wait registers them
//! again with the caller's (or the default) runtime, restarting their deadline timers there.
//!
//! Files: this one holds the error values, the `PollDesc` slab and its slot protocol;
//! `poller.rs` the epoll instance; `registration.rs` the public API; `tests.rs` the model tests.
//!
//! Differences from Go: Go's poller is global and registers at open (goroutines migrate, so
//! any P may poll); here each worker has one and registration waits for the first wait,
//! because our coroutines are pinned. A worker stuck in a long coroutine does not poll; the
//! monitor polls its instance then (every 10 ms), so waiters elsewhere still wake. Deadlines
//! use cancellable runtime timers, as Go's do.
use std::io;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::overflow::throw;
use crate::park::{self, Unparker};
use crate::task::WaitReason;
use crate::timer::{self, nanotime, TimerAction, TimerHandle};

pub(super) const NIL: usize = 0;
pub(super) const READY: usize = 4;
pub(super) const WAKE_TAG: u64 = u64::MAX;

const CHUNK: usize = 256;
const MAX_CHUNKS: usize = 8192;

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The error of an operation on a descriptor closed while (or before) it waited. Matches Go's
/// `net.ErrClosed`; use [`is_closed_error`] to test for it.
#[derive(Debug)]
pub struct ClosedError;

impl std::fmt::Display for ClosedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("use of closed network connection")
    }
}
impl std::error::Error for ClosedError {}

/// A fresh "use of closed network connection" error (Go's `net.ErrClosed`), kind
/// `NotConnected`. An `ENOTCONN` from the kernel has that kind too: tell them apart with
/// [`is_closed_error`] (gort-net's looks through its `OpError`s), not by kind.
pub fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, ClosedError)
}

/// True for errors made by [`closed_error`].
pub fn is_closed_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|x| x.is::<ClosedError>())
}

/// The error of an operation whose deadline passed (Go's `os.ErrDeadlineExceeded`,
/// "i/o timeout"), kind `TimedOut`.
pub fn timeout_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "i/o timeout")
}

pub(crate) struct PollDesc {
    pub(super) index: u32,
    pub(super) gen: AtomicU32,
    pub(super) rg: AtomicUsize,
    pub(super) wg: AtomicUsize,
    pub(super) closing: AtomicBool,
    /// Sticky: an event reported urgent data, end of input, a hang-up or an error
    /// (`EPOLLPRI`, `EPOLLRDHUP`, `EPOLLHUP`, `EPOLLERR`) since registration. A TCP read then
    /// may return fewer bytes than asked while the next read would not block (it stops at the
    /// urgent mark, and a pending EOF or error comes after the data), so the short-read
    /// shortcut of `Fd` (see `Registration::wait_read_drained`) is off from then on.
    pub(super) short_read_unreliable: AtomicBool,
    /// Where the waiting side keeps its state (the `Fd`, usually inside the connection object
    /// on the parked coroutine's stack, far above its stack pointer): a prefetch hint that the
    /// poller loads with the woken coroutine's stack. Never dereferenced; a stale value
    /// (the object moved or was dropped) costs one useless prefetch.
    pub(super) hint: AtomicUsize,
    /// Deadlines: 0 none, -1 expired, > 0 nanotime.
    pub(super) rd: AtomicI64,
    pub(super) wd: AtomicI64,
    pub(super) rseq: AtomicU64,
    pub(super) wseq: AtomicU64,
    pub(super) rtimer: Mutex<Option<TimerHandle>>,
    pub(super) wtimer: Mutex<Option<TimerHandle>>,
    /// The runtime (`&Shared` as an address; 0: none) whose epoll instance holds the fd.
    pub(super) home_rt: AtomicUsize,
    /// That runtime shut down ([`rehome_all`]): its epoll instance is closed and forgot the
    /// fd, so the next wait registers it again, with the caller's runtime.
    pub(super) rehome: AtomicBool,
}

pub(super) struct Slab {
    chunks: Box<[AtomicPtr<PollDesc>]>,
    nchunks: AtomicUsize,
    free: Mutex<Vec<u32>>,
}

pub(super) fn slab() -> &'static Slab {
    static SLAB: OnceLock<Slab> = OnceLock::new();
    SLAB.get_or_init(|| Slab {
        chunks: (0..MAX_CHUNKS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
        nchunks: AtomicUsize::new(0),
        free: Mutex::new(Vec::new()),
    })
}

impl Slab {
    pub(super) fn get(&self, index: u32) -> Option<&'static PollDesc> {
        let (c, i) = (index as usize / CHUNK, index as usize % CHUNK);
        // Acquire: pairs with the Release store that published the chunk in `alloc`.
        let p = self.chunks.get(c)?.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: chunks are leaked `[PollDesc; CHUNK]` arrays that are never freed, and
        // `i < CHUNK`.
        Some(unsafe { &*p.add(i) })
    }

    pub(super) fn alloc(&self) -> io::Result<&'static PollDesc> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.is_empty() {
            let c = self.nchunks.load(Ordering::Relaxed);
            if c >= MAX_CHUNKS {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "gort: too many registered descriptors",
                ));
            }
            let chunk: Box<[PollDesc]> = (0..CHUNK)
                .map(|i| PollDesc::new((c * CHUNK + i) as u32))
                .collect();
            let p = Box::leak(chunk).as_mut_ptr();
            self.chunks[c].store(p, Ordering::Release);
            self.nchunks.store(c + 1, Ordering::Relaxed);
            free.extend(((c * CHUNK) as u32..((c + 1) * CHUNK) as u32).rev());
        }
        let idx = free
            .pop()
            .unwrap_or_else(|| throw("Slab::alloc: empty free list"));
        drop(free);
        self.get(idx)
            .ok_or_else(|| io::Error::other("gort: bad poll descriptor index"))
    }

    pub(super) fn release(&self, pd: &'static PollDesc) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pd.index);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Read,
    Write,
}

impl PollDesc {
    fn new(index: u32) -> PollDesc {
        PollDesc {
            index,
            gen: AtomicU32::new(0),
            rg: AtomicUsize::new(NIL),
            wg: AtomicUsize::new(NIL),
            closing: AtomicBool::new(false),
            short_read_unreliable: AtomicBool::new(false),
            hint: AtomicUsize::new(0),
            rd: AtomicI64::new(0),
            wd: AtomicI64::new(0),
            rseq: AtomicU64::new(0),
            wseq: AtomicU64::new(0),
            rtimer: Mutex::new(None),
            wtimer: Mutex::new(None),
            home_rt: AtomicUsize::new(0),
            rehome: AtomicBool::new(false),
        }
    }

    pub(super) fn slot(&self, m: Mode) -> &AtomicUsize {
        match m {
            Mode::Read => &self.rg,
            Mode::Write => &self.wg,
        }
    }

    pub(super) fn deadline(&self, m: Mode) -> &AtomicI64 {
        match m {
            Mode::Read => &self.rd,
            Mode::Write => &self.wd,
        }
    }

    pub(super) fn seq(&self, m: Mode) -> &AtomicU64 {
        match m {
            Mode::Read => &self.rseq,
            Mode::Write => &self.wseq,
        }
    }

    pub(super) fn timer(&self, m: Mode) -> &Mutex<Option<TimerHandle>> {
        match m {
            Mode::Read => &self.rtimer,
            Mode::Write => &self.wtimer,
        }
    }

    /// Go's `netpollcheckerr`.
    pub(super) fn check_err(&self, m: Mode) -> io::Result<()> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(closed_error());
        }
        if self.deadline(m).load(Ordering::SeqCst) < 0 {
            return Err(timeout_error());
        }
        Ok(())
    }

    /// Go's `netpollunblock`: returns the waiter to wake, if any.
    pub(super) fn unblock(&self, m: Mode, ioready: bool) -> Option<Unparker> {
        let slot = self.slot(m);
        let mut old = slot.load(Ordering::SeqCst);
        loop {
            if old == READY || (old == NIL && !ioready) {
                return None;
            }
            let new = if ioready { READY } else { NIL };
            // SeqCst: pairs with the waiter's CAS in `wait` and its re-check of
            // closing/deadline after installing itself.
            match slot.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) if old == NIL => return None,
                // SAFETY: `old` is a waiter word installed by `wait` via `into_raw`; winning the
                // CAS removed it from the slot, so we are its only decoder.
                Ok(_) => return Some(unsafe { Unparker::from_raw(old) }),
                Err(cur) => old = cur,
            }
        }
    }

    /// Go's `netpollblock` + `poll_runtime_pollWait`: waits until ready, closed or timed out.
    ///
    /// With `drained` (the caller knows the last syscall left nothing to read, and so skipped
    /// the one that would fail with `EAGAIN`), an error that is already pending when the wait
    /// starts returns `Ok` instead, so that the caller tries its syscall once first: data
    /// that arrived before a deadline passed is still returned, as without the shortcut.
    pub(super) fn wait(&self, m: Mode, drained: bool) -> io::Result<()> {
        if let Err(e) = self.check_err(m) {
            return if drained { Ok(()) } else { Err(e) };
        }
        let slot = self.slot(m);
        let me;
        loop {
            if slot
                .compare_exchange(READY, NIL, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Ok(());
            }
            let raw = park::unparker().into_raw();
            match slot.compare_exchange(NIL, raw, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    me = raw;
                    break;
                }
                Err(cur) => {
                    // SAFETY: `raw` came from `into_raw` just above and was not installed.
                    drop(unsafe { Unparker::from_raw(raw) });
                    if cur != READY {
                        throw("PollDesc::wait: two waiters on one descriptor direction");
                    }
                }
            }
        }
        let why = if m == Mode::Read {
            WaitReason::FdRead
        } else {
            WaitReason::FdWrite
        };
        loop {
            // Re-check after installing: a concurrent close/deadline/rehome either saw us (and
            // will swap us out) or we see its flag here. A rehome is a spurious wake-up: the
            // caller retries its syscall, and its next wait registers the fd again.
            if (self.check_err(m).is_err() || self.rehome.load(Ordering::SeqCst))
                && slot
                    .compare_exchange(me, NIL, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                // SAFETY: we removed our own word from the slot; nobody else decodes it.
                drop(unsafe { Unparker::from_raw(me) });
                return if drained { Ok(()) } else { self.check_err(m) };
            }
            if slot.load(Ordering::SeqCst) != me {
                break;
            }
            park::park_reason(why);
            if slot.load(Ordering::SeqCst) != me {
                break;
            }
        }
        // A notifier swapped us out (and owns/consumed our word).
        let old = slot.swap(NIL, Ordering::SeqCst);
        if old == READY {
            return Ok(());
        }
        if old != NIL {
            // Another waiter installed itself after us: put it back (cannot happen with one
            // waiter per direction, which the net layer guarantees with its locks).
            slot.store(old, Ordering::SeqCst);
            throw("PollDesc::wait: foreign waiter in slot");
        }
        self.check_err(m)
    }

    pub(super) fn deadline_fired(&self, gen: u32, seq: u64, m: Mode) {
        if self.gen.load(Ordering::SeqCst) != gen || self.seq(m).load(Ordering::SeqCst) != seq {
            return; // stale: descriptor closed/reused or the deadline moved
        }
        self.deadline(m).store(-1, Ordering::SeqCst);
        if let Some(u) = self.unblock(m, false) {
            u.wake();
        }
    }

    pub(super) fn set_deadline(&'static self, gen: u32, m: Mode, d: Option<Instant>) {
        let seq = self.new_deadline_seq(m);
        match d {
            None => self.deadline(m).store(0, Ordering::SeqCst),
            Some(t) => {
                let n = timer::instant_to_nanos(t);
                if n > i64::MAX as u64 {
                    // Past ~292 years from the epoch: it never comes. Stored as the largest
                    // deadline (positive: not expired), with no timer (Go clamps it likewise).
                    self.deadline(m).store(i64::MAX, Ordering::SeqCst);
                } else {
                    self.arm_deadline(gen, seq, m, n);
                }
            }
        }
    }

    /// Starts the timer of a pending deadline again on the caller's runtime (the fd moved
    /// there because the runtime that held its timer shut down; see `rehome`).
    pub(super) fn rearm_deadline(&'static self, gen: u32, m: Mode) {
        let d = self.deadline(m).load(Ordering::SeqCst);
        if d > 0 && d < i64::MAX {
            let seq = self.new_deadline_seq(m);
            self.arm_deadline(gen, seq, m, d as u64);
        }
    }

    /// A new deadline sequence number for `m` (stale timers see it changed), with the old
    /// timer cancelled.
    fn new_deadline_seq(&self, m: Mode) -> u64 {
        let seq = self.seq(m).fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(old) = self
            .timer(m)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            old.cancel();
        }
        seq
    }

    /// Sets deadline `n` (nanotime, at most `i64::MAX`) for sequence `seq`: expired now, or
    /// with a timer on the caller's runtime.
    fn arm_deadline(&'static self, gen: u32, seq: u64, m: Mode, n: u64) {
        if n <= nanotime() {
            self.deadline(m).store(-1, Ordering::SeqCst);
            if let Some(u) = self.unblock(m, false) {
                u.wake();
            }
        } else {
            self.deadline(m).store(n as i64, Ordering::SeqCst);
            let h = timer::add_timer_nanos(
                n,
                TimerAction::Call(Box::new(move || self.deadline_fired(gen, seq, m))),
            );
            *self.timer(m).lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
    }
}

/// Called when runtime `rt` (a `&Shared` as an address) has shut down and closed its epoll
/// instances: every descriptor they held is marked for registering again, and its waiters
/// (coroutines of other runtimes, plain threads) are woken to retry their syscalls, so that
/// their next wait registers the fd with a live runtime. Without this a plain thread reading
/// a connection that outlived its runtime would wait for an event no poller delivers.
pub(crate) fn rehome_all(rt: usize) {
    let s = slab();
    // Relaxed: chunks published before this shutdown are seen through `get`'s Acquire; a
    // chunk added concurrently holds only descriptors registered elsewhere.
    let n = s.nchunks.load(Ordering::Relaxed) * CHUNK;
    for i in 0..n {
        let Some(pd) = s.get(i as u32) else { continue };
        if pd.home_rt.load(Ordering::SeqCst) != rt {
            continue;
        }
        // SeqCst: pairs with the waiter's re-check in `wait` (it sees the flag, or we see it
        // in the slot) and with `Registration::ensure_registered`.
        pd.rehome.store(true, Ordering::SeqCst);
        for m in [Mode::Read, Mode::Write] {
            if let Some(u) = pd.unblock(m, true) {
                u.wake();
            }
        }
    }
}

mod poller;
mod registration;
#[cfg(test)]
mod tests;

pub(crate) use poller::Poller;
pub use registration::Registration;
