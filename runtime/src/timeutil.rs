//! Channel-based time (Go's `time.After`, `time.Tick`, `time.Timer`, `time.Ticker`),
//! re-exported from [`crate::time`].
//!
//! Each is a capacity-1 channel fed by a runtime timer ([`crate::timer::add_timer`]) whose
//! callback only `try_send`s, so it never blocks the scheduler. A slow receiver of a ticker
//! misses ticks (the send is dropped when the slot is full), like Go's.
//!
//! `Timer` and `Ticker` follow Go 1.23: after `stop` or `reset` returns, no value from the old
//! arming can be received. Every arming has a generation number; the callback sends only if
//! its generation is still current, checked under the same small lock that `stop`/`reset`
//! hold while they bump the generation and drain the channel. Values are sent at or after
//! the deadline, never early.
//!
//! Differences from Go: an `after(d)` timer keeps its entry (and channel) alive until it
//! fires even if the receiver is dropped (Go 1.23 lets the GC collect it); `tick(d)` stops
//! once every receiver is gone. `Timer::stop` returns true if it prevented a delivery
//! (the timer was pending or its value was still unreceived).
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::chan::{bounded, Receiver, Sender};
use crate::timer::{add_timer, TimerHandle};

fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Arms a runtime timer strictly after `when` (so the clock has passed it when it fires).
fn arm(when: Instant, f: impl FnOnce() + Send + 'static) -> TimerHandle {
    add_timer(when + Duration::from_nanos(1), f)
}

/// A receiver that gets the current time once, at least `d` from now (Go's `time.After`).
/// Use it as a timeout arm: `recv(gort::time::after(d)) -> _ => ...`.
pub fn after(d: Duration) -> Receiver<Instant> {
    let (tx, rx) = bounded(1);
    arm(deadline_after(d), move || {
        let _ = tx.try_send(Instant::now());
    });
    rx
}

/// A receiver that gets the time every `d` (Go's `time.Tick`); stops when the receiver(s)
/// are dropped. Slow receivers miss ticks.
///
/// # Panics
/// If `d` is zero.
pub fn tick(d: Duration) -> Receiver<Instant> {
    let (slot, rx) = TickSlot::start(d);
    drop(slot);
    rx
}

struct TimerSlot {
    gen: u64,
    handle: Option<TimerHandle>,
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A one-shot timer with a channel (Go's `time.Timer`, 1.23 semantics).
pub struct Timer {
    tx: Sender<Instant>,
    rx: Receiver<Instant>,
    slot: Arc<Mutex<TimerSlot>>,
}

impl Timer {
    /// A timer that sends the time on its channel once, at least `d` from now.
    pub fn new(d: Duration) -> Timer {
        let (tx, rx) = bounded(1);
        let t = Timer {
            tx,
            rx,
            slot: Arc::new(Mutex::new(TimerSlot {
                gen: 0,
                handle: None,
            })),
        };
        let mut g = lock(&t.slot);
        t.arm_locked(&mut g, deadline_after(d));
        drop(g);
        t
    }

    fn arm_locked(&self, g: &mut TimerSlot, when: Instant) {
        let gen = g.gen;
        let weak = Arc::downgrade(&self.slot);
        let tx = self.tx.clone();
        g.handle = Some(arm(when, move || {
            if let Some(slot) = weak.upgrade() {
                let g = lock(&slot);
                if g.gen == gen {
                    let _ = tx.try_send(Instant::now());
                }
            }
        }));
    }

    fn stop_locked(&self, g: &mut TimerSlot) -> bool {
        g.gen += 1;
        let pending = g.handle.take().is_some_and(|h| h.cancel());
        let unreceived = self.rx.try_recv().is_ok();
        pending || unreceived
    }

    /// Stops the timer; afterwards no value will be received until a `reset`. Returns true
    /// if this prevented a delivery.
    pub fn stop(&self) -> bool {
        let mut g = lock(&self.slot);
        self.stop_locked(&mut g)
    }

    /// Stops the timer and re-arms it for `d` from now; any value of the old arming is
    /// discarded. Returns what `stop` would have.
    pub fn reset(&self, d: Duration) -> bool {
        let mut g = lock(&self.slot);
        let was = self.stop_locked(&mut g);
        self.arm_locked(&mut g, deadline_after(d));
        was
    }

    /// The channel the time is sent on (Go's `t.C`).
    pub fn channel(&self) -> &Receiver<Instant> {
        &self.rx
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.slot).handle.take() {
            h.cancel();
        }
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Timer { .. }")
    }
}

struct TickSlot {
    gen: u64,
    period: Duration,
    handle: Option<TimerHandle>,
    tx: Sender<Instant>,
}

impl TickSlot {
    fn start(d: Duration) -> (Arc<Mutex<TickSlot>>, Receiver<Instant>) {
        assert!(!d.is_zero(), "non-positive interval for tick");
        let (tx, rx) = bounded(1);
        let slot = Arc::new(Mutex::new(TickSlot {
            gen: 0,
            period: d,
            handle: None,
            tx,
        }));
        let mut g = lock(&slot);
        TickSlot::arm(&slot, &mut g, deadline_after(d));
        drop(g);
        (slot, rx)
    }

    fn arm(slot: &Arc<Mutex<TickSlot>>, g: &mut TickSlot, when: Instant) {
        let gen = g.gen;
        let s = slot.clone();
        g.handle = Some(arm(when, move || TickSlot::fire(&s, gen, when)));
    }

    fn fire(slot: &Arc<Mutex<TickSlot>>, gen: u64, when: Instant) {
        let mut g = lock(slot);
        if g.gen != gen || g.tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let _ = g.tx.try_send(now);
        // Skip ticks that are already late, as Go's ticker does.
        let mut next = when + g.period;
        while next <= now {
            next += g.period;
        }
        TickSlot::arm(slot, &mut g, next);
    }
}

/// Sends the time on its channel every period (Go's `time.Ticker`); drops ticks for slow
/// receivers. Stopped when dropped.
pub struct Ticker {
    rx: Receiver<Instant>,
    slot: Arc<Mutex<TickSlot>>,
}

impl Ticker {
    /// A ticker with period `d`.
    ///
    /// # Panics
    /// If `d` is zero.
    pub fn new(d: Duration) -> Ticker {
        let (slot, rx) = TickSlot::start(d);
        Ticker { rx, slot }
    }

    /// Stops the ticker; no tick is received afterwards (until a `reset`).
    pub fn stop(&self) {
        let mut g = lock(&self.slot);
        g.gen += 1;
        if let Some(h) = g.handle.take() {
            h.cancel();
        }
        let _ = self.rx.try_recv();
    }

    /// Stops and restarts the ticker with period `d`, discarding an unreceived tick.
    ///
    /// # Panics
    /// If `d` is zero.
    pub fn reset(&self, d: Duration) {
        assert!(!d.is_zero(), "non-positive interval for Ticker.Reset");
        self.stop();
        let mut g = lock(&self.slot);
        g.period = d;
        TickSlot::arm(&self.slot, &mut g, deadline_after(d));
    }

    /// The channel ticks are sent on (Go's `t.C`).
    pub fn channel(&self) -> &Receiver<Instant> {
        &self.rx
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticker { .. }")
    }
}
