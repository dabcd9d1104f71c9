//! [`Registration`]: the public low-level netpoller API (Go's `poll_runtime_pollOpen`,
//! `pollWait`, `pollSetDeadline`, `pollUnblock`, `pollClose`). See `netpoll/mod.rs`.
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
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
