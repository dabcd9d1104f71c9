//! [`FdMutex`]: the lock word of an [`Fd`](crate::io::Fd) (Go's `internal/poll.fdMutex`).
//!
//! One atomic word holds a `CLOSED` flag, the read and write lock bits, a "waiters queued"
//! bit for each lock, and the count of references (operations in flight; each read or write
//! lock holds one). The uncontended path of an I/O call (take the read lock, do the syscall,
//! release it) is one CAS on the way in and one on the way out: no mutex, no queue. A second
//! reader (or writer) queues under `q` and the releaser hands the lock straight to the first
//! in line (FIFO, like Go's starvation-mode hand-off), so concurrent writers never interleave
//! and none starves. `close` sets `CLOSED` and wakes every queued waiter with an error; the fd
//! itself is destroyed by whoever drops the last reference after `CLOSED` was set, so the
//! descriptor number is never released while a syscall on it is in flight.
//!
//! Invariants:
//! - `RWAIT` (`WWAIT`) is set iff the read (write) queue is non-empty; both change only
//!   under `q`.
//! - A waiter queues only while the lock bit it wants is set (its CAS under `q` checks that),
//!   and a releaser whose CAS saw no wait bit clears the lock bit, so no waiter is stranded:
//!   once a wait bit is set, the holder's release fails its fast CAS and hands over under `q`.
//! - References grow only while `CLOSED` is clear. Exactly one party sees the count at zero
//!   with `CLOSED` set: `close` (if nothing was in flight) or the release that drops the last
//!   reference. That party destroys the fd.
//!
//! Go differences: Go's woken waiter retries its CAS (and may lose to a newcomer); here the
//! lock is handed over, and newcomers do not barge past a queue. Waiting parks the coroutine
//! (or blocks a plain thread) through [`park`](crate::park).
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::park::{self, Unparker};
use crate::task::WaitReason;

const CLOSED: u64 = 1;
const RLOCK: u64 = 1 << 1;
const WLOCK: u64 = 1 << 2;
const RWAIT: u64 = 1 << 3;
const WWAIT: u64 = 1 << 4;
const REF_SHIFT: u32 = 8;
const REF: u64 = 1 << REF_SHIFT;

/// Which hold an operation takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The read lock plus a reference.
    Read,
    /// The write lock plus a reference.
    Write,
    /// A plain reference (setsockopt and the like).
    Ref,
}

impl Kind {
    fn bits(self) -> (u64, u64) {
        match self {
            Kind::Read => (RLOCK, RWAIT),
            Kind::Write => (WLOCK, WWAIT),
            Kind::Ref => (0, 0),
        }
    }
}

/// The fd was closed (the caller maps it to "use of closed network connection").
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const REFUSED: u8 = 2;

struct Waiter {
    state: AtomicU8,
    unparker: Unparker,
}

#[derive(Default)]
struct Queues {
    r: VecDeque<Arc<Waiter>>,
    w: VecDeque<Arc<Waiter>>,
}

impl Queues {
    fn get(&mut self, kind: Kind) -> &mut VecDeque<Arc<Waiter>> {
        if kind == Kind::Read {
            &mut self.r
        } else {
            &mut self.w
        }
    }
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct FdMutex {
    state: AtomicU64,
    q: Mutex<Queues>,
}

fn refs(s: u64) -> u64 {
    s >> REF_SHIFT
}

impl FdMutex {
    fn lock_q(&self) -> MutexGuard<'_, Queues> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `kind`, waiting (parked) behind earlier holders; `Err` once the fd is closed.
    pub(crate) fn acquire(&self, kind: Kind) -> Result<(), Closed> {
        let (lock, wait) = kind.bits();
        let mut s = self.state.load(SeqCst);
        loop {
            if s & CLOSED != 0 {
                return Err(Closed);
            }
            if s & (lock | wait) != 0 {
                return self.acquire_slow(kind);
            }
            match self
                .state
                .compare_exchange_weak(s, (s | lock) + REF, SeqCst, SeqCst)
            {
                Ok(_) => return Ok(()),
                Err(x) => s = x,
            }
        }
    }

    #[cold]
    fn acquire_slow(&self, kind: Kind) -> Result<(), Closed> {
        let (lock, wait) = kind.bits();
        let me = Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            unparker: park::unparker(),
        });
        {
            let mut q = self.lock_q();
            let mut s = self.state.load(SeqCst);
            loop {
                if s & CLOSED != 0 {
                    return Err(Closed);
                }
                // Under `q` a free lock has an empty queue (see the invariants): take it.
                let new = if s & lock == 0 {
                    (s | lock) + REF
                } else {
                    s | wait
                };
                match self.state.compare_exchange(s, new, SeqCst, SeqCst) {
                    Ok(_) if s & lock == 0 => return Ok(()),
                    Ok(_) => break,
                    Err(x) => s = x,
                }
            }
            q.get(kind).push_back(me.clone());
        }
        let why = if kind == Kind::Read {
            WaitReason::FdRead
        } else {
            WaitReason::FdWrite
        };
        loop {
            // SeqCst: pairs with the store in `release_slow` (GRANTED: the lock and a
            // reference are ours) or in `close` (REFUSED).
            match me.state.load(SeqCst) {
                GRANTED => return Ok(()),
                REFUSED => return Err(Closed),
                _ => park::park_reason(why),
            }
        }
    }

    /// Releases `kind`. True if the caller must now destroy the fd (closed, last reference).
    pub(crate) fn release(&self, kind: Kind) -> bool {
        let (lock, wait) = kind.bits();
        let mut s = self.state.load(SeqCst);
        loop {
            if refs(s) == 0 || s & lock != lock {
                crate::overflow::throw("FdMutex::release: not held");
            }
            if s & wait != 0 {
                return self.release_slow(kind);
            }
            let new = (s & !lock) - REF;
            match self.state.compare_exchange_weak(s, new, SeqCst, SeqCst) {
                Ok(_) => return new & CLOSED != 0 && refs(new) == 0,
                Err(x) => s = x,
            }
        }
    }

    #[cold]
    fn release_slow(&self, kind: Kind) -> bool {
        let (lock, wait) = kind.bits();
        let mut q = self.lock_q();
        let queue = q.get(kind);
        if let Some(next) = queue.pop_front() {
            if queue.is_empty() {
                self.state.fetch_and(!wait, SeqCst);
            }
            drop(q);
            // Hand over: the lock bit stays set and our reference becomes the waiter's.
            next.state.store(GRANTED, SeqCst);
            next.unparker.unpark();
            return false;
        }
        // The queue was drained by `close` after we saw the wait bit: plain release.
        let old = self
            .state
            .fetch_update(SeqCst, SeqCst, |s| Some((s & !(lock | wait)) - REF))
            .unwrap_or_else(|s| s);
        let new = (old & !(lock | wait)) - REF;
        new & CLOSED != 0 && refs(new) == 0
    }

    /// Sets `CLOSED` and refuses every queued waiter. `None` if it was already closed, else
    /// whether the caller must destroy the fd now (nothing in flight).
    pub(crate) fn close(&self) -> Option<bool> {
        let old = self.state.fetch_or(CLOSED, SeqCst);
        if old & CLOSED != 0 {
            return None;
        }
        let waiters: Vec<Arc<Waiter>> = {
            let mut q = self.lock_q();
            self.state.fetch_and(!(RWAIT | WWAIT), SeqCst);
            let q = &mut *q;
            q.r.drain(..).chain(q.w.drain(..)).collect()
        };
        for w in waiters {
            w.state.store(REFUSED, SeqCst);
            w.unparker.unpark();
        }
        Some(refs(old) == 0)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(SeqCst) & CLOSED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn read_and_write_are_independent_and_refs_count() {
        let m = FdMutex::default();
        m.acquire(Kind::Read).unwrap();
        m.acquire(Kind::Write).unwrap();
        m.acquire(Kind::Ref).unwrap();
        assert_eq!(refs(m.state.load(SeqCst)), 3);
        assert!(!m.release(Kind::Ref));
        assert!(!m.release(Kind::Write));
        assert!(!m.release(Kind::Read));
        assert_eq!(m.state.load(SeqCst), 0);
    }

    #[test]
    fn close_with_nothing_in_flight_destroys_once() {
        let m = FdMutex::default();
        assert_eq!(m.close(), Some(true));
        assert_eq!(m.close(), None);
        assert_eq!(m.acquire(Kind::Read), Err(Closed));
        assert!(m.is_closed());
    }

    #[test]
    fn last_release_after_close_destroys() {
        let m = FdMutex::default();
        m.acquire(Kind::Read).unwrap();
        m.acquire(Kind::Ref).unwrap();
        assert_eq!(m.close(), Some(false));
        assert!(!m.release(Kind::Ref));
        assert!(m.release(Kind::Read));
    }

    /// A second reader waits for the first and gets the lock handed over; close refuses a
    /// queued writer.
    #[test]
    fn waiter_gets_handoff_and_close_refuses_waiters() {
        let m = Arc::new(FdMutex::default());
        m.acquire(Kind::Read).unwrap();
        m.acquire(Kind::Write).unwrap();
        let got = Arc::new(AtomicUsize::new(0));
        let (m2, g2) = (m.clone(), got.clone());
        let reader = std::thread::spawn(move || {
            m2.acquire(Kind::Read).unwrap();
            g2.store(1, SeqCst);
            m2.release(Kind::Read)
        });
        let m3 = m.clone();
        let writer = std::thread::spawn(move || m3.acquire(Kind::Write));
        // Wait until both are queued (bounded by count, not time).
        for _ in 0..10_000 {
            if m.state.load(SeqCst) & (RWAIT | WWAIT) == RWAIT | WWAIT {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(m.state.load(SeqCst) & (RWAIT | WWAIT), RWAIT | WWAIT);
        assert_eq!(got.load(SeqCst), 0, "reader got in while the lock was held");
        assert!(!m.release(Kind::Read));
        assert!(!reader.join().unwrap());
        assert_eq!(m.close(), Some(false));
        assert_eq!(writer.join().unwrap(), Err(Closed));
        assert!(
            m.release(Kind::Write),
            "the last release after close destroys"
        );
    }

    /// Threads hammer one mutex with all three kinds: at most one reader and one writer hold
    /// at a time, then a close in the middle of it is followed by exactly one destroy.
    #[test]
    fn exclusion_and_single_destroy_under_contention() {
        let m = Arc::new(FdMutex::default());
        let inside = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let destroys = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (m, inside, destroys) = (m.clone(), inside.clone(), destroys.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000usize {
                        let kind = [Kind::Read, Kind::Write, Kind::Ref][(t + i) % 3];
                        if m.acquire(kind).is_err() {
                            return;
                        }
                        let slot = match kind {
                            Kind::Read => Some(&inside[0]),
                            Kind::Write => Some(&inside[1]),
                            Kind::Ref => None,
                        };
                        if let Some(s) = slot {
                            assert_eq!(s.fetch_add(1, SeqCst), 0, "two holders of {kind:?}");
                            std::hint::spin_loop();
                            s.fetch_sub(1, SeqCst);
                        }
                        if m.release(kind) {
                            destroys.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        if m.close() == Some(true) {
            destroys.fetch_add(1, SeqCst);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(destroys.load(SeqCst), 1);
        assert_eq!(refs(m.state.load(SeqCst)), 0);
    }
}
