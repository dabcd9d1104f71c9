//! [`Registration`]: the public low-level netpoller API (Go's `poll_runtime_pollOpen`,
//! `pollWait`, `pollSetDeadline`, `pollUnblock`, `pollClose`). See `netpoll/mod.rs`.
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::Instant;

use super::*;
use crate::sched::Shared;

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
    /// The runtime whose worker's epoll instance holds (or will hold) the fd: always a
    /// `&'static Shared`. It changes only in `register_slow`, while `home` is `BUSY`, when
    /// that runtime has shut down (see `PollDesc::rehome`).
    rt: AtomicPtr<Shared>,
    /// Index of the worker whose epoll instance holds the fd, or `UNREG`/`BUSY`.
    home: AtomicUsize,
    deregistered: AtomicBool,
}

const UNREG: usize = usize::MAX;
const BUSY: usize = usize::MAX - 1;

/// The error of a first wait on a descriptor whose runtime was dropped.
fn runtime_gone() -> io::Error {
    io::Error::other("gort: the runtime this descriptor belongs to was shut down")
}

impl Registration {
    /// Prepares `fd`, which must be non-blocking, for readiness waits on the current (or
    /// default) runtime. The caller keeps ownership of the fd and must keep it open until
    /// this registration is dropped.
    ///
    /// The fd joins an epoll instance lazily, at its first wait, and it joins the one of the
    /// worker that waits (see `netpoll/mod.rs`), so a bad fd is reported by the first wait.
    pub fn new(fd: RawFd) -> io::Result<Registration> {
        let rt = crate::sched::current_or_default();
        let pd = slab().alloc()?;
        let gen = pd.gen.load(Ordering::SeqCst);
        pd.closing.store(false, Ordering::SeqCst);
        pd.short_read_unreliable.store(false, Ordering::SeqCst);
        pd.rd.store(0, Ordering::SeqCst);
        pd.wd.store(0, Ordering::SeqCst);
        pd.rg.store(NIL, Ordering::SeqCst);
        pd.wg.store(NIL, Ordering::SeqCst);
        pd.home_rt.store(0, Ordering::SeqCst);
        pd.rehome.store(false, Ordering::SeqCst);
        Ok(Registration {
            pd,
            gen,
            fd,
            rt: AtomicPtr::new(rt as *const Shared as *mut Shared),
            home: AtomicUsize::new(UNREG),
            deregistered: AtomicBool::new(false),
        })
    }

    /// Joins the epoll instance of the calling worker (of a worker chosen by descriptor
    /// index, for plain threads) if not done yet, or again if its runtime shut down. Edge-
    /// triggered registration reports the readiness the fd already has, so nothing that
    /// happened before is lost.
    #[inline]
    fn ensure_registered(&self) -> io::Result<()> {
        if self.home.load(Ordering::SeqCst) < BUSY && !self.pd.rehome.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.register_slow()
    }

    /// The runtime the fd belongs to.
    fn rt(&self) -> &'static Shared {
        // SAFETY: `rt` only ever holds a pointer made from a `&'static Shared` (in `new` and
        // `move_to`), and runtimes' `Shared`s are never freed.
        unsafe { &*self.rt.load(Ordering::SeqCst) }
    }

    #[cold]
    fn register_slow(&self) -> io::Result<()> {
        // Take the registration: a first one (`UNREG`), or a move off a runtime that shut
        // down (`rehome`); the other direction may be doing it right now (`BUSY`).
        let old = loop {
            let h = self.home.load(Ordering::SeqCst);
            if h == BUSY {
                std::hint::spin_loop();
                continue;
            }
            if h != UNREG && !self.pd.rehome.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self
                .home
                .compare_exchange(h, BUSY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break h;
            }
        };
        if old != UNREG {
            // Its epoll instance is closed and has forgotten the fd. (Relaxed: a statistic,
            // pairs with nothing.)
            self.rt().workers[old]
                .poller
                .registered
                .fetch_sub(1, Ordering::Relaxed);
            self.pd.rehome.store(false, Ordering::SeqCst);
            self.move_to_current();
        }
        let mut r = self.epoll_add();
        if r.is_none() && self.move_to_current() {
            // The runtime it was made on has shut down before its first wait.
            r = self.epoll_add();
        }
        match r {
            Some(Ok(me)) => {
                // Relaxed: a statistic (pairs with nothing).
                self.rt().workers[me]
                    .poller
                    .registered
                    .fetch_add(1, Ordering::Relaxed);
                self.home.store(me, Ordering::SeqCst);
                // A deregistration that ran while we were BUSY found nothing to remove: do it
                // for it. (SeqCst on both sides: either it sees `me` in `home`, or we see its
                // flag here.)
                if self.deregistered.load(Ordering::SeqCst) {
                    self.epoll_del(me);
                }
                Ok(())
            }
            Some(Err(err)) => {
                self.home.store(UNREG, Ordering::SeqCst);
                Err(err)
            }
            None => {
                self.home.store(UNREG, Ordering::SeqCst);
                Err(runtime_gone())
            }
        }
    }

    /// Moves the registration to the caller's (or the default) runtime, restarting its
    /// deadline timers there (those of the old runtime never fire); false if it is there
    /// already. Only while `home` is `BUSY` (ours).
    fn move_to_current(&self) -> bool {
        let rt = crate::sched::current_or_default();
        if std::ptr::eq(rt, self.rt()) {
            return false;
        }
        self.rt
            .store(rt as *const Shared as *mut Shared, Ordering::SeqCst);
        for m in [Mode::Read, Mode::Write] {
            self.pd.rearm_deadline(self.gen, m);
        }
        true
    }

    /// `EPOLL_CTL_ADD` on the epoll instance of the calling worker of `rt` (a worker picked by
    /// descriptor index for other threads): that worker's index, the error, or `None` if
    /// that runtime has shut down.
    fn epoll_add(&self) -> Option<io::Result<usize>> {
        let rt = self.rt();
        let n = rt.nworkers();
        let me = crate::sched::worker::current_index(rt).unwrap_or(self.pd.index as usize % n);
        // Before the fd can report an event there: `rehome_all` for that runtime finds it.
        self.pd
            .home_rt
            .store(rt as *const Shared as usize, Ordering::SeqCst);
        let mut e = libc::epoll_event {
            events: (libc::EPOLLIN
                | libc::EPOLLOUT
                | libc::EPOLLRDHUP
                | libc::EPOLLPRI
                | libc::EPOLLET) as u32,
            u64: ((self.pd.index as u64) << 32) | self.gen as u64,
        };
        rt.workers[me]
            .poller
            .with_fds(|epfd, _| {
                // SAFETY: valid epoll fd (kept open by `with_fds`) and event pointer; `fd`
                // validity is the caller's business (a bad fd gives EBADF, reported below).
                cvt(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, self.fd, &mut e) })
            })
            .map(|r| r.map(|_| me))
    }

    fn epoll_del(&self, home: usize) {
        let mut e = libc::epoll_event { events: 0, u64: 0 };
        // A closed epoll instance (the runtime was dropped) has forgotten the fd anyway.
        self.rt().workers[home].poller.with_fds(|epfd, _| {
            // SAFETY: valid epoll fd (kept open by `with_fds`) and event pointer; failure (fd
            // already gone, or removed twice by racing deregistrations) is harmless.
            let _ = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, self.fd, &mut e) };
        });
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Records `addr` (the caller's own state, which a woken waiter touches first) as a
    /// prefetch hint for the poller: see `PollDesc::hint`.
    #[inline]
    pub fn set_hint(&self, addr: usize) {
        // Relaxed: a prefetch address only (the poller's Relaxed load); it publishes nothing.
        self.pd.hint.store(addr, Ordering::Relaxed);
    }

    /// Waits until the fd may be readable; `Err` if closed (see [`is_closed_error`]) or the
    /// read deadline passed (`TimedOut`). May return `Ok` spuriously: retry the syscall.
    pub fn wait_read(&self) -> io::Result<()> {
        self.ensure_registered()?;
        self.pd.wait(Mode::Read, false)
    }

    /// Like [`Registration::wait_read`], for a caller whose last read syscall drained the
    /// receive queue (a TCP read that returned fewer bytes than asked) and that skips the
    /// syscall that would now fail with `EAGAIN` (tokio does the same). Readiness consumed by
    /// an earlier wait came before that drained read, so any byte that arrives after it
    /// raises a new edge and wakes this wait: returning here means "try the syscall".
    ///
    /// If the descriptor is already closed or past its read deadline, returns `Ok` at once
    /// so that the syscall is tried first (bytes already in the kernel are still returned
    /// after a deadline; the following wait reports the error). Waking from a close or a
    /// deadline while parked is an error, as for `wait_read`.
    pub fn wait_read_drained(&self) -> io::Result<()> {
        self.ensure_registered()?;
        self.pd.wait(Mode::Read, true)
    }

    /// True while a short read still proves the receive queue empty: no event so far
    /// reported urgent data, end of input, a hang-up or an error. After one did, a TCP read
    /// may stop short (at the urgent mark, or before a pending EOF or error) although the
    /// next read would not block, and that condition raises no new readiness edge.
    ///
    /// The poller sets the flag before it publishes the event's readiness, and a reader
    /// consumes readiness before its read syscall, so a reader whose short read came after
    /// such an event either sees the flag or finds that readiness still pending.
    pub fn short_read_drains(&self) -> bool {
        !self.pd.short_read_unreliable.load(Ordering::SeqCst)
    }

    /// Waits until the fd may be writable; errors as [`Registration::wait_read`].
    pub fn wait_write(&self) -> io::Result<()> {
        self.ensure_registered()?;
        self.pd.wait(Mode::Write, false)
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
            u.wake();
        }
        true
    }

    /// Removes the fd from epoll (idempotent). Call it before closing the fd: once closed,
    /// its number may be reused by an unrelated open.
    pub fn deregister(&self) {
        if self.deregistered.swap(true, Ordering::SeqCst) {
            return;
        }
        loop {
            match self.home.load(Ordering::SeqCst) {
                UNREG => return,
                BUSY => std::hint::spin_loop(), // a first wait is registering right now
                home => return self.epoll_del(home),
            }
        }
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
        let home = self.home.load(Ordering::SeqCst);
        if home < BUSY {
            self.rt().workers[home]
                .poller
                .registered
                .fetch_sub(1, Ordering::Relaxed);
        }
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
