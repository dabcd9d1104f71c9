//! The netpoller (Go's `netpoll.go` + `netpoll_epoll.go`).
//!
//! One epoll instance per runtime, edge-triggered, one registration per fd for
//! `IN|OUT|RDHUP`. Each registered fd has a [`PollDesc`] with a read and a write waiter slot.
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
//! Differences from Go: Go's poller is global; here each runtime has one. Deadlines use
//! cancellable runtime timers, as Go's do.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{
    fence, AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::overflow::throw;
use crate::park::{self, Unparker};
use crate::sched::Shared;
use crate::task::WaitReason;
use crate::timer::{self, nanotime, TimerAction, TimerHandle};

const NIL: usize = 0;
const READY: usize = 4;
const WAKE_TAG: u64 = u64::MAX;

const CHUNK: usize = 256;
const MAX_CHUNKS: usize = 8192;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
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

/// A fresh "use of closed network connection" error (kind `NotConnected`).
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
    index: u32,
    gen: AtomicU32,
    rg: AtomicUsize,
    wg: AtomicUsize,
    closing: AtomicBool,
    /// Deadlines: 0 none, -1 expired, > 0 nanotime.
    rd: AtomicI64,
    wd: AtomicI64,
    rseq: AtomicU64,
    wseq: AtomicU64,
    rtimer: Mutex<Option<TimerHandle>>,
    wtimer: Mutex<Option<TimerHandle>>,
}

struct Slab {
    chunks: Box<[AtomicPtr<PollDesc>]>,
    nchunks: AtomicUsize,
    free: Mutex<Vec<u32>>,
}

fn slab() -> &'static Slab {
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
    fn get(&self, index: u32) -> Option<&'static PollDesc> {
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

    fn alloc(&self) -> io::Result<&'static PollDesc> {
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

    fn release(&self, pd: &'static PollDesc) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pd.index);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
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
            rd: AtomicI64::new(0),
            wd: AtomicI64::new(0),
            rseq: AtomicU64::new(0),
            wseq: AtomicU64::new(0),
            rtimer: Mutex::new(None),
            wtimer: Mutex::new(None),
        }
    }

    fn slot(&self, m: Mode) -> &AtomicUsize {
        match m {
            Mode::Read => &self.rg,
            Mode::Write => &self.wg,
        }
    }

    fn deadline(&self, m: Mode) -> &AtomicI64 {
        match m {
            Mode::Read => &self.rd,
            Mode::Write => &self.wd,
        }
    }

    fn seq(&self, m: Mode) -> &AtomicU64 {
        match m {
            Mode::Read => &self.rseq,
            Mode::Write => &self.wseq,
        }
    }

    fn timer(&self, m: Mode) -> &Mutex<Option<TimerHandle>> {
        match m {
            Mode::Read => &self.rtimer,
            Mode::Write => &self.wtimer,
        }
    }

    /// Go's `netpollcheckerr`.
    fn check_err(&self, m: Mode) -> io::Result<()> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(closed_error());
        }
        if self.deadline(m).load(Ordering::SeqCst) < 0 {
            return Err(timeout_error());
        }
        Ok(())
    }

    /// Go's `netpollunblock`: returns the waiter to wake, if any.
    fn unblock(&self, m: Mode, ioready: bool) -> Option<Unparker> {
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
    fn wait(&self, m: Mode) -> io::Result<()> {
        self.check_err(m)?;
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
            // Re-check after installing: a concurrent close/deadline either saw us (and will
            // swap us out) or we see its flag here.
            if self.check_err(m).is_err()
                && slot
                    .compare_exchange(me, NIL, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                // SAFETY: we removed our own word from the slot; nobody else decodes it.
                drop(unsafe { Unparker::from_raw(me) });
                return self.check_err(m);
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

    fn deadline_fired(&self, gen: u32, seq: u64, m: Mode) {
        if self.gen.load(Ordering::SeqCst) != gen || self.seq(m).load(Ordering::SeqCst) != seq {
            return; // stale: descriptor closed/reused or the deadline moved
        }
        self.deadline(m).store(-1, Ordering::SeqCst);
        if let Some(u) = self.unblock(m, false) {
            u.unpark();
        }
    }

    fn set_deadline(&'static self, gen: u32, m: Mode, d: Option<Instant>) {
        let seq = self.seq(m).fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(old) = self
            .timer(m)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            old.cancel();
        }
        match d {
            None => self.deadline(m).store(0, Ordering::SeqCst),
            Some(t) => {
                let n = timer::instant_to_nanos(t);
                if n <= nanotime() {
                    self.deadline(m).store(-1, Ordering::SeqCst);
                    if let Some(u) = self.unblock(m, false) {
                        u.unpark();
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
    }
}

/// One runtime's epoll instance plus its wake-up eventfd.
pub(crate) struct Poller {
    epfd: OwnedFd,
    evfd: OwnedFd,
    polling: AtomicBool,
    /// nanotime the blocked poller will wake at (u64::MAX: no timeout), 0 when not blocked.
    poll_until: AtomicU64,
    wake_sig: AtomicBool,
    registered: AtomicUsize,
    events: Mutex<Vec<libc::epoll_event>>,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall; the result is checked.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `ep` is a fresh fd we own.
        let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: plain syscall; the result is checked.
        let ev = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `ev` is a fresh fd we own.
        let evfd = unsafe { OwnedFd::from_raw_fd(ev) };
        let mut e = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_TAG,
        };
        // SAFETY: valid fds and a valid event pointer.
        cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ev, &mut e) })?;
        Ok(Poller {
            epfd,
            evfd,
            polling: AtomicBool::new(false),
            poll_until: AtomicU64::new(0),
            wake_sig: AtomicBool::new(false),
            registered: AtomicUsize::new(0),
            events: Mutex::new(vec![libc::epoll_event { events: 0, u64: 0 }; 256]),
        })
    }

    pub(crate) fn has_registrations(&self) -> bool {
        self.registered.load(Ordering::Relaxed) != 0
    }

    /// Takes the poller role (only one thread polls at a time).
    pub(crate) fn try_acquire(&self) -> bool {
        !self.polling.load(Ordering::Relaxed)
            && self
                .polling
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    pub(crate) fn release(&self) {
        self.polling.store(false, Ordering::SeqCst);
    }

    /// Interrupts a blocked `epoll_wait` (Go's `netpollBreak`).
    pub(crate) fn wake(&self) {
        if self
            .wake_sig
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
            let _ = unsafe { libc::write(self.evfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// A timer was added for `when`: wake the poller if it sleeps past it.
    pub(crate) fn timer_added(&self, when: u64) {
        fence(Ordering::SeqCst);
        let until = self.poll_until.load(Ordering::SeqCst);
        if until != 0 && when < until {
            self.wake();
        }
    }

    /// Non-blocking poll if nobody else polls. Returns true if it polled.
    pub(crate) fn try_poll(&self, _timeout: u64, rt: &'static Shared) -> bool {
        if !self.try_acquire() {
            return false;
        }
        self.poll(0, rt);
        self.release();
        true
    }

    /// Blocks in `epoll_wait` until an event, a wake-up or the nearest timer (caller holds the
    /// poller role), then runs expired timers.
    pub(crate) fn poll_blocking(&self, rt: &'static Shared) {
        let next = rt.next_timer();
        self.poll_until.store(next.max(1), Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let next = rt.next_timer();
        let now = nanotime();
        let timeout_ms: i32 = if next == u64::MAX {
            -1
        } else if next <= now {
            0
        } else {
            // Round up: never wake before the timer is due.
            ((next - now).div_ceil(1_000_000)).min(i32::MAX as u64) as i32
        };
        self.poll(timeout_ms, rt);
        self.poll_until.store(0, Ordering::SeqCst);
        rt.run_timers(nanotime());
    }

    fn poll(&self, timeout_ms: i32, _rt: &'static Shared) {
        let mut evs = self.events.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `evs` is a valid buffer of `evs.len()` events, exclusively ours (lock held).
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as i32,
                timeout_ms,
            )
        };
        if n <= 0 {
            return; // EINTR or timeout
        }
        let mut wake = Vec::new();
        for e in &evs[..n as usize] {
            let data = e.u64;
            let bits = e.events;
            if data == WAKE_TAG {
                let mut buf = 0u64;
                // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
                let _ =
                    unsafe { libc::read(self.evfd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
                self.wake_sig.store(false, Ordering::SeqCst);
                continue;
            }
            let Some(pd) = slab().get((data >> 32) as u32) else {
                continue;
            };
            if pd.gen.load(Ordering::SeqCst) != data as u32 {
                continue; // stale event for a closed (maybe reused) descriptor
            }
            let r = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            let w = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if bits & r != 0 {
                wake.extend(pd.unblock(Mode::Read, true));
            }
            if bits & w != 0 {
                wake.extend(pd.unblock(Mode::Write, true));
            }
        }
        drop(evs);
        for u in wake {
            u.unpark();
        }
    }
}

/// A non-blocking descriptor registered with the netpoller: the low-level API that
/// `gort::net` and [`crate::io::Fd`] are built on.
///
/// The usual loop: try the syscall; on `EAGAIN` call [`Registration::wait_read`] (or
/// `wait_write`) and retry. Waiting parks the calling coroutine (or blocks a plain thread).
/// At most one waiter per direction at a time: serialize readers (and writers) above this.
pub struct Registration {
    pd: &'static PollDesc,
    gen: u32,
    fd: RawFd,
    rt: &'static Shared,
    deregistered: AtomicBool,
}

impl Registration {
    /// Registers `fd`, which must be non-blocking, with the current (or default) runtime's
    /// epoll. The caller keeps ownership of the fd and must keep it open until this
    /// registration is dropped.
    pub fn new(fd: RawFd) -> io::Result<Registration> {
        let rt = crate::sched::current_or_default();
        let pd = slab().alloc()?;
        let gen = pd.gen.load(Ordering::SeqCst);
        pd.closing.store(false, Ordering::SeqCst);
        pd.rd.store(0, Ordering::SeqCst);
        pd.wd.store(0, Ordering::SeqCst);
        pd.rg.store(NIL, Ordering::SeqCst);
        pd.wg.store(NIL, Ordering::SeqCst);
        let mut e = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: ((pd.index as u64) << 32) | gen as u64,
        };
        // SAFETY: valid epoll fd and event pointer; `fd` validity is the caller's business
        // (a bad fd gives EBADF, reported below).
        if let Err(err) = cvt(unsafe {
            libc::epoll_ctl(rt.poller.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut e)
        }) {
            pd.gen.fetch_add(1, Ordering::SeqCst);
            slab().release(pd);
            return Err(err);
        }
        rt.poller.registered.fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            pd,
            gen,
            fd,
            rt,
            deregistered: AtomicBool::new(false),
        })
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Waits until the fd may be readable; `Err` if closed (see [`is_closed_error`]) or the
    /// read deadline passed (`TimedOut`). May return `Ok` spuriously: retry the syscall.
    pub fn wait_read(&self) -> io::Result<()> {
        self.pd.wait(Mode::Read)
    }

    /// Waits until the fd may be writable; errors as [`Registration::wait_read`].
    pub fn wait_write(&self) -> io::Result<()> {
        self.pd.wait(Mode::Write)
    }

    /// `Err` if closed or the read deadline has passed (check before a syscall that may
    /// block).
    pub fn check_read(&self) -> io::Result<()> {
        self.pd.check_err(Mode::Read)
    }

    /// `Err` if closed or the write deadline has passed.
    pub fn check_write(&self) -> io::Result<()> {
        self.pd.check_err(Mode::Write)
    }

    /// Sets (or with `None` clears) the read deadline. A deadline in the past fails waiting
    /// reads at once; a change affects reads already parked.
    pub fn set_read_deadline(&self, d: Option<Instant>) {
        self.pd.set_deadline(self.gen, Mode::Read, d);
    }

    /// Sets (or clears) the write deadline.
    pub fn set_write_deadline(&self, d: Option<Instant>) {
        self.pd.set_deadline(self.gen, Mode::Write, d);
    }

    /// Sets both deadlines.
    pub fn set_deadline(&self, d: Option<Instant>) {
        self.set_read_deadline(d);
        self.set_write_deadline(d);
    }

    /// Marks the descriptor closing and wakes every waiter with a "use of closed network
    /// connection" error (Go's `poll_runtime_pollUnblock`). Returns false if it was already
    /// closing. The fd stays registered (and open) until the registration is dropped.
    pub fn close(&self) -> bool {
        if self.pd.closing.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.pd.rseq.fetch_add(1, Ordering::SeqCst);
        self.pd.wseq.fetch_add(1, Ordering::SeqCst);
        let r = self.pd.unblock(Mode::Read, false);
        let w = self.pd.unblock(Mode::Write, false);
        for u in [r, w].into_iter().flatten() {
            u.unpark();
        }
        true
    }

    /// Removes the fd from epoll (idempotent). Call it before closing the fd: once closed,
    /// its number may be reused by an unrelated open.
    pub fn deregister(&self) {
        if self.deregistered.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut e = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: valid epoll fd and event pointer; failure (fd already gone) is harmless.
        let _ = unsafe {
            libc::epoll_ctl(
                self.rt.poller.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.fd,
                &mut e,
            )
        };
    }

    /// True once [`Registration::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.pd.closing.load(Ordering::SeqCst)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.close();
        self.deregister();
        for m in [Mode::Read, Mode::Write] {
            if let Some(t) = self
                .pd
                .timer(m)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                t.cancel();
            }
        }
        // New generation: pending events and deadline timers for this use become stale.
        self.pd.gen.fetch_add(1, Ordering::SeqCst);
        self.rt.poller.registered.fetch_sub(1, Ordering::Relaxed);
        slab().release(self.pd);
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("fd", &self.fd)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;

    fn leaked() -> &'static PollDesc {
        Box::leak(Box::new(PollDesc::new(0)))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Notify(bool, bool),
        Consume(bool),
    }

    proptest! {
        /// With no waiter, the slot behaves like a sticky "ready" bit per direction that a
        /// consume clears; error notifications never invent readiness.
        #[test]
        fn slot_matches_model(ops in proptest::collection::vec(prop_oneof![
            (any::<bool>(), any::<bool>()).prop_map(|(r, io)| Op::Notify(r, io)),
            any::<bool>().prop_map(Op::Consume),
        ], 1..200)) {
            let pd = leaked();
            let mut ready = [false, false];
            for o in ops {
                match o {
                    Op::Notify(r, io) => {
                        let m = if r { Mode::Read } else { Mode::Write };
                        prop_assert!(pd.unblock(m, io).is_none());
                        if io { ready[r as usize] = true; }
                    }
                    Op::Consume(r) => {
                        let m = if r { Mode::Read } else { Mode::Write };
                        let got = pd.slot(m).compare_exchange(READY, NIL, Ordering::SeqCst, Ordering::SeqCst).is_ok();
                        prop_assert_eq!(got, ready[r as usize]);
                        ready[r as usize] = false;
                    }
                }
            }
        }
    }

    /// A waiting thread and a notifier race 20k times; a lost wake-up would hang the waiter.
    #[test]
    fn no_lost_wakeups_between_waiter_and_notifier() {
        let pd = leaked();
        let rounds = 20_000u64;
        let count = Arc::new(AtomicU64::new(0));
        let c2 = count.clone();
        let waiter = std::thread::spawn(move || {
            for _ in 0..rounds {
                pd.wait(Mode::Read).unwrap();
                c2.fetch_add(1, Ordering::SeqCst);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..rounds {
            while count.load(Ordering::SeqCst) < i {
                assert!(
                    Instant::now() < deadline,
                    "waiter stuck at {i}: lost wake-up"
                );
                std::hint::spin_loop();
            }
            if let Some(u) = pd.unblock(Mode::Read, true) {
                u.unpark();
            }
        }
        waiter.join().unwrap();
    }

    /// Close wakes a parked waiter with the closed error; later waits fail at once.
    #[test]
    fn close_fails_waiters() {
        let pd = leaked();
        let t = std::thread::spawn(move || pd.wait(Mode::Write));
        std::thread::sleep(Duration::from_millis(10));
        pd.closing.store(true, Ordering::SeqCst);
        if let Some(u) = pd.unblock(Mode::Write, false) {
            u.unpark();
        }
        assert!(is_closed_error(&t.join().unwrap().unwrap_err()));
        assert!(is_closed_error(&pd.wait(Mode::Read).unwrap_err()));
    }
}
