//! The epoll instance of one runtime and its wake-up eventfd (Go's `netpoll_epoll.go`:
//! `netpollinit`, `netpoll`, `netpollBreak`). See the module comment in `netpoll/mod.rs`.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::sched::Shared;
use crate::timer::nanotime;

/// One runtime's epoll instance plus its wake-up eventfd.
pub(crate) struct Poller {
    pub(super) epfd: OwnedFd,
    evfd: OwnedFd,
    polling: AtomicBool,
    /// nanotime the blocked poller will wake at (u64::MAX: no timeout), 0 when not blocked.
    poll_until: AtomicU64,
    wake_sig: AtomicBool,
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
