//! The epoll instance of one worker and its wake-up eventfd (Go's `netpoll_epoll.go`:
//! `netpollinit`, `netpoll`, `netpollBreak`). See the module comment in `netpoll/mod.rs`.
//!
//! Each worker owns one `Poller`. The owner blocks in it when it has nothing to run (that is
//! how an idle worker sleeps: there is no futex sleep), and polls it without blocking every
//! few dozen scheduling ticks. Any other thread may poll it without blocking too (the
//! monitor does, as a backstop when the owner is stuck in a long coroutine): the events
//! buffer's lock makes one poller at a time, and waking a task pinned to another worker goes
//! through that worker's inbox.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::park::Unparker;

/// Events fetched per `epoll_wait`.
const BATCH: usize = 128;

/// One worker's epoll instance plus its wake-up eventfd.
pub(crate) struct Poller {
    pub(super) epfd: OwnedFd,
    evfd: OwnedFd,
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
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
            let _ = unsafe { libc::write(self.evfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
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
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as i32,
                timeout_ms,
            )
        };
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
