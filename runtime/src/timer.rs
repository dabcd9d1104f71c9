//! Timers (Go's `time.go`): per-worker heaps ordered by deadline, with lazy deletion.
//!
//! Each worker has a [`TimerHeap`]; a timer is added to the heap of the calling worker (or of
//! worker 0 from a plain thread). Any thread may run any heap's expired timers: the
//! sleeping worker that holds the timer role does so after its `epoll_wait` (whose timeout is
//! the nearest timer of all heaps),
//! busy workers every 61 scheduling ticks, and the monitor thread as a backstop when every
//! worker is stuck. `next_when` mirrors the heap's minimum so that checks need no lock.
//!
//! Cancellation is lazy: a cancelled entry stays in the heap until it reaches the top, and the
//! heap is rebuilt without cancelled entries when they exceed half of it (Go 1.23 cleans its
//! heaps similarly). Actions run outside the heap's lock.
//!
//! Invariant: a timer never fires before its deadline (`when <= now` at firing).
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::park::Unparker;

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Monotonic nanoseconds since the runtime's epoch (Go's `nanotime`).
pub(crate) fn nanotime() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Converts an `Instant` to nanotime, saturating (past: 0; far future: u64::MAX - 1).
pub(crate) fn instant_to_nanos(t: Instant) -> u64 {
    match t.checked_duration_since(epoch()) {
        Some(d) => u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX - 1)
            .min(u64::MAX - 1),
        None => 0,
    }
}

const PENDING: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    Unpark(Unparker),
    Call(Box<dyn FnOnce() + Send>),
}

struct Entry {
    when: u64,
    seq: u64,
    action: TimerAction,
    state: Option<Arc<TimerState>>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.when == o.when && self.seq == o.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (self.when, self.seq).cmp(&(o.when, o.seq))
    }
}

struct TimerState {
    state: AtomicU8,
    heap: &'static TimerHeap,
}

/// A cancellable timer (see [`add_timer`]).
pub struct TimerHandle {
    st: Arc<TimerState>,
}

impl TimerHandle {
    /// Cancels the timer. Returns true if it had not fired yet (its action will never run).
    pub fn cancel(&self) -> bool {
        let ok = self
            .st
            .state
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ok {
            self.st.heap.zombies.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// True once the timer's action has run (or started running).
    pub fn fired(&self) -> bool {
        self.st.state.load(Ordering::Acquire) == FIRED
    }
}

pub(crate) struct TimerHeap {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    next: AtomicU64,
    zombies: AtomicUsize,
}

impl TimerHeap {
    pub(crate) fn new() -> TimerHeap {
        TimerHeap {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            next: AtomicU64::new(u64::MAX),
            zombies: AtomicUsize::new(0),
        }
    }

    /// Earliest deadline in the heap (u64::MAX if empty); cancelled entries may count.
    pub(crate) fn next_when(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    fn push(&self, when: u64, action: TimerAction, state: Option<Arc<TimerState>>) {
        let mut g = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let seq = g.1;
        g.1 += 1;
        g.0.push(Reverse(Entry {
            when,
            seq,
            action,
            state,
        }));
        let z = self.zombies.load(Ordering::Relaxed);
        if z > 64 && z * 2 > g.0.len() {
            // Many cancelled entries: rebuild without them.
            let old = std::mem::take(&mut g.0);
            g.0 = old
                .into_iter()
                .filter(|Reverse(e)| {
                    e.state
                        .as_ref()
                        .is_none_or(|s| s.state.load(Ordering::Acquire) != CANCELLED)
                })
                .collect();
            self.zombies.store(0, Ordering::Relaxed);
        }
        let top = g.0.peek().map_or(u64::MAX, |Reverse(e)| e.when);
        self.next.store(top, Ordering::SeqCst);
    }

    /// Runs the actions of entries with `when <= now`. Returns how many ran.
    pub(crate) fn run_expired(&self, now: u64) -> usize {
        let mut due = Vec::new();
        {
            let mut g = self.heap.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(Reverse(e)) = g.0.peek() {
                if e.when > now {
                    break;
                }
                let Some(Reverse(e)) = g.0.pop() else { break };
                due.push(e);
            }
            let top = g.0.peek().map_or(u64::MAX, |Reverse(e)| e.when);
            self.next.store(top, Ordering::SeqCst);
        }
        let mut n = 0;
        for e in due {
            if let Some(s) = &e.state {
                if s.state
                    .compare_exchange(PENDING, FIRED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    let z = self.zombies.load(Ordering::Relaxed);
                    if z > 0 {
                        self.zombies.fetch_sub(1, Ordering::Relaxed);
                    }
                    continue;
                }
            }
            n += 1;
            match e.action {
                TimerAction::Unpark(u) => u.wake(),
                TimerAction::Call(f) => f(),
            }
        }
        n
    }
}

fn heap_for(rt: &'static crate::sched::Shared) -> &'static TimerHeap {
    let i = crate::sched::worker::current_index(rt).unwrap_or(0);
    &rt.workers[i].timers
}

fn after_push(rt: &'static crate::sched::Shared, when: u64) {
    rt.timer_added(when);
}

/// Runs `f` on a runtime thread at or after `when`, unless cancelled first through the
/// returned handle. `f` must be quick and must not block: it runs in the scheduler (as Go's
/// timer functions do); typically it sends on a channel or unparks a waiter.
pub fn add_timer(when: Instant, f: impl FnOnce() + Send + 'static) -> TimerHandle {
    add_timer_nanos(instant_to_nanos(when), TimerAction::Call(Box::new(f)))
}

pub(crate) fn add_timer_nanos(when: u64, action: TimerAction) -> TimerHandle {
    let rt = crate::sched::current_or_default();
    let heap = heap_for(rt);
    let st = Arc::new(TimerState {
        state: AtomicU8::new(PENDING),
        heap,
    });
    heap.push(when, action, Some(st.clone()));
    after_push(rt, when);
    TimerHandle { st }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn leak_heap() -> &'static TimerHeap {
        Box::leak(Box::new(TimerHeap::new()))
    }

    #[test]
    fn fires_in_deadline_order_never_early() {
        let h = leak_heap();
        let log = Arc::new(Mutex::new(Vec::new()));
        for (i, when) in [50u64, 10, 30, 20, 40].into_iter().enumerate() {
            let l = log.clone();
            h.push(
                when,
                TimerAction::Call(Box::new(move || l.lock().unwrap().push((i, when)))),
                None,
            );
        }
        assert_eq!(h.next_when(), 10);
        assert_eq!(h.run_expired(9), 0);
        assert_eq!(h.run_expired(30), 3);
        assert_eq!(h.next_when(), 40);
        assert_eq!(h.run_expired(100), 2);
        let whens: Vec<u64> = log.lock().unwrap().iter().map(|x| x.1).collect();
        assert_eq!(whens, vec![10, 20, 30, 40, 50]);
        assert_eq!(h.next_when(), u64::MAX);
    }

    #[test]
    fn cancel_prevents_firing_and_zombies_are_purged() {
        let h = leak_heap();
        let hits = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..200u64 {
            let st = Arc::new(TimerState {
                state: AtomicU8::new(PENDING),
                heap: h,
            });
            let c = hits.clone();
            h.push(
                1000 + i,
                TimerAction::Call(Box::new(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                })),
                Some(st.clone()),
            );
            handles.push(TimerHandle { st });
        }
        for t in &handles[..150] {
            assert!(t.cancel());
            assert!(!t.cancel());
        }
        // The next push notices the zombies and rebuilds.
        h.push(5000, TimerAction::Call(Box::new(|| {})), None);
        assert!(h.len() <= 51, "heap not purged: {}", h.len());
        assert_eq!(h.run_expired(10_000), 51);
        assert_eq!(hits.load(Ordering::SeqCst), 50);
        assert!(handles[199].fired());
        assert!(!handles[199].cancel());
    }

    #[test]
    fn instant_conversion_saturates() {
        let far = Instant::now() + Duration::from_secs(1 << 40);
        assert_eq!(instant_to_nanos(far), u64::MAX - 1);
        assert!(instant_to_nanos(Instant::now()) > 0 || nanotime() == 0);
    }
}
