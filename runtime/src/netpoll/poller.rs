//! The epoll instance of one worker and its wake-up eventfd (Go's `netpoll_epoll.go`:
//! `netpollinit`, `netpoll`, `netpollBreak`). See the module comment in `netpoll/mod.rs`.
//!
//! Each worker owns one `Poller`. The owner blocks in it when it has nothing to run (that is
//! how an idle worker sleeps: there is no futex sleep), and polls it without blocking every
//! few dozen scheduling ticks. Any other thread may poll it without blocking too (the
//! monitor does, as a backstop when the owner is stuck in a long coroutine): the events
//! buffer's lock makes one poller at a time, and waking a task pinned to another worker goes
//! through that worker's inbox.
//!
//! Closing (a dropped `Runtime`): once its workers and monitor are joined, only stragglers use
//! the two descriptors: a waker that saw the worker asleep just before it exited, and
//! registrations of connections that outlive the runtime. Those go through [`Poller::enter`]
//! (a count of users plus a `CLOSING` bit in one word); [`Poller::close_when_idle`] sets the
//! bit, and whoever brings the word to "closing, no users" closes both descriptors, once
//! (`closed` decides). After that nobody touches the numbers, so a later `open` that reuses
//! them never receives our eventfd writes or `epoll_ctl`s. Go's netpoller lives as long as
//! the process, so Go has no counterpart.
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::park::Unparker;

/// Events fetched per `epoll_wait`.
const BATCH: usize = 128;

/// The closing bit of `Poller::users` (users count in steps of 2).
const CLOSING: usize = 1;

/// One worker's epoll instance plus its wake-up eventfd.
pub(crate) struct Poller {
    epfd: RawFd,
    evfd: RawFd,
    /// Users of `epfd`/`evfd` outside the owner, times 2, plus `CLOSING` (see the module docs).
    users: AtomicUsize,
    /// Set by the one party that closes the descriptors.
    closed: AtomicBool,
    /// Set from the eventfd write in `wake` until the poll that drains it: coalesces wakes.
    wake_sig: AtomicBool,
    /// Descriptors registered here (a hint: skip the non-blocking poll when zero).
    pub(super) registered: AtomicUsize,
    events: Mutex<Vec<libc::epoll_event>>,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall; the result is checked.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        let ev = cvt(
            // SAFETY: plain syscall; the result is checked.
            unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) },
        )
        .and_then(|ev| {
            let mut e = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: WAKE_TAG,
            };
            // SAFETY: valid fds and a valid event pointer.
            match cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ev, &mut e) }) {
                Ok(_) => Ok(ev),
                Err(err) => {
                    // SAFETY: `ev` is ours and not shared yet.
                    unsafe { libc::close(ev) };
                    Err(err)
                }
            }
        });
        let ev = match ev {
            Ok(ev) => ev,
            Err(err) => {
                // SAFETY: `ep` is ours and not shared yet.
                unsafe { libc::close(ep) };
                return Err(err);
            }
        };
        Ok(Poller {
            epfd: ep,
            evfd: ev,
            users: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            wake_sig: AtomicBool::new(false),
            registered: AtomicUsize::new(0),
            events: Mutex::new(vec![libc::epoll_event { events: 0, u64: 0 }; BATCH]),
        })
    }

    pub(crate) fn has_registrations(&self) -> bool {
        // Relaxed: a hint only; a registration that races with this check delivers its first
        // event at a later poll (the owner's blocking poll never consults it).
        self.registered.load(Ordering::Relaxed) != 0
    }

    /// Interrupts a blocked `epoll_wait` on this instance (Go's `netpollBreak`).
    pub(crate) fn wake(&self) {
        if self
            .wake_sig
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            self.with_fds(|_, evfd| {
                let one: u64 = 1;
                // SAFETY: writing 8 bytes from a valid u64 to our eventfd, kept open by the
                // `with_fds` guard.
                let _ = unsafe { libc::write(evfd, (&one as *const u64).cast(), 8) };
            });
        }
    }

    /// Runs `f(epfd, evfd)` unless the descriptors are closed or closing (then `None`): the
    /// guard for every user other than the owner worker (see the module docs).
    pub(crate) fn with_fds<R>(&self, f: impl FnOnce(RawFd, RawFd) -> R) -> Option<R> {
        let r = if self.users.fetch_add(2, Ordering::SeqCst) & CLOSING == 0 {
            Some(f(self.epfd, self.evfd))
        } else {
            None
        };
        if self.users.fetch_sub(2, Ordering::SeqCst) == 2 | CLOSING {
            self.close_now();
        }
        r
    }

    /// Closes both descriptors once no [`Poller::with_fds`] user is inside (at once, or
    /// when the last one leaves). The caller guarantees the owner worker and every other
    /// thread that polls this instance have stopped for good.
    pub(crate) fn close_when_idle(&self) {
        if self.users.fetch_or(CLOSING, Ordering::SeqCst) & !CLOSING == 0 {
            self.close_now();
        }
    }

    #[cfg(test)]
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn close_now(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            // SAFETY: ours; `closed` lets exactly one party get here, after `CLOSING` was set
            // and while no user was inside, and no user enters once `CLOSING` is set.
            unsafe {
                libc::close(self.evfd);
                libc::close(self.epfd);
            }
        }
    }

    /// Non-blocking poll unless another thread is polling this instance right now. Returns
    /// the number of events handled, `None` if it did not poll.
    pub(crate) fn try_poll(&self) -> Option<usize> {
        match self.events.try_lock() {
            Ok(mut evs) => Some(self.poll_locked(&mut evs, 0)),
            Err(_) => None,
        }
    }

    /// Blocks in `epoll_wait` for at most `timeout_ms` (-1: no limit) until an event or a
    /// wake-up, and readies what the events wake. Returns the number of events handled.
    pub(crate) fn poll_blocking(&self, timeout_ms: i32) -> usize {
        let mut evs = self.events.lock().unwrap_or_else(|e| e.into_inner());
        self.poll_locked(&mut evs, timeout_ms)
    }

    fn poll_locked(&self, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: `evs` is a valid buffer of `evs.len()` events, exclusively ours (lock held).
        let n =
            unsafe { libc::epoll_wait(self.epfd, evs.as_mut_ptr(), evs.len() as i32, timeout_ms) };
        if n <= 0 {
            return 0; // EINTR or timeout
        }
        let evs = &evs[..n as usize];
        // The descriptors, task headers and stacks that events lead to are cold (one of each
        // per connection). Touch them in passes so that their cache misses overlap instead of
        // stalling each event in turn: descriptors, then the tasks waiting on them (found
        // through the descriptors), then (in the loop that wakes them) their stacks.
        for e in evs {
            if e.u64 != WAKE_TAG {
                if let Some(pd) = slab().get((e.u64 >> 32) as u32) {
                    let p = pd as *const PollDesc as usize;
                    crate::task::prefetch(p);
                    crate::task::prefetch(p + 64);
                }
            }
        }
        for e in evs {
            if e.u64 != WAKE_TAG {
                if let Some(pd) = slab().get((e.u64 >> 32) as u32) {
                    // Relaxed: only a prefetch address; `unblock` below does the real read.
                    Unparker::prefetch_raw(pd.rg.load(Ordering::Relaxed));
                    Unparker::prefetch_raw(pd.wg.load(Ordering::Relaxed));
                    // Relaxed: a prefetch address (see `PollDesc::hint`).
                    let h = pd.hint.load(Ordering::Relaxed);
                    crate::task::prefetch(h);
                    crate::task::prefetch(h.wrapping_add(64));
                }
            }
        }
        for e in evs {
            let data = e.u64;
            let bits = e.events;
            if data == WAKE_TAG {
                let mut buf = 0u64;
                // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
                let _ = unsafe { libc::read(self.evfd, (&mut buf as *mut u64).cast(), 8) };
                self.wake_sig.store(false, Ordering::SeqCst);
                continue;
            }
            let Some(pd) = slab().get((data >> 32) as u32) else {
                continue;
            };
            if pd.gen.load(Ordering::SeqCst) != data as u32 {
                continue; // stale event for a closed (maybe reused) descriptor
            }
            let ending =
                (libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if bits & ending != 0 {
                // Before the read slot's READY store, which the reader's consuming CAS
                // reads (SeqCst both): a reader that saw this event sees the flag.
                pd.short_read_unreliable.store(true, Ordering::SeqCst);
            }
            let r = (libc::EPOLLIN
                | libc::EPOLLPRI
                | libc::EPOLLRDHUP
                | libc::EPOLLHUP
                | libc::EPOLLERR) as u32;
            let w = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            // Unparking here, lock held, is fine: it only queues the task (on this thread's
            // local queue when we are its worker, else in its owner's inbox with a wake-up),
            // and never polls.
            if bits & r != 0 {
                if let Some(u) = pd.unblock(Mode::Read, true) {
                    u.prefetch();
                    u.wake();
                }
            }
            if bits & w != 0 {
                if let Some(u) = pd.unblock(Mode::Write, true) {
                    u.prefetch();
                    u.wake();
                }
            }
        }
        evs.len()
    }
}
