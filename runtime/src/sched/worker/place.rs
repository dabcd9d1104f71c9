//! Placement of never-run coroutines over the workers by their pinned counts.
//!
//! What: each worker counts the coroutines pinned to it (started there, not finished:
//! `WorkerShared::pinned`, written only by that worker). When a worker is about to start a
//! never-run coroutine (`start_fresh`) while it holds at least [`BALANCE_MIN`] pinned ones, it
//! looks at one other worker (round robin); if that one holds fewer by more than
//! max([`BALANCE_SLACK`], an eighth), the coroutine goes to that worker's inbox and starts
//! there.
//!
//! Why: a started coroutine never moves (its stack may hold `!Send` data, docs/soundness.md),
//! and stealing takes only never-run coroutines from rings, which busy workers never look at.
//! Without placement the worker that runs an accept loop keeps every connection whose handler
//! it starts, and the other workers idle.
//!
//! Invariants: a hand-over moves only a never-run coroutine (its owner is unset until the
//! receiving worker starts it), and only to a worker seen to switch coroutines since the last
//! look: one that stays in a single coroutine may be stuck in a long one, and an inbox cannot
//! be stolen from. Counts are Relaxed estimates: a stale one misplaces one coroutine, never
//! loses one. Short-lived coroutines finish before the count reaches [`BALANCE_MIN`], so
//! spawn-heavy work keeps the plain ring and stealing.
//!
//! Go counterpart: none as such. Go balances by moving goroutines (netpoll readies a goroutine
//! on the polling P, idle Ps steal from any runq); here the start decides the worker for good.
use std::sync::atomic::Ordering;

use super::WorkerCtx;

/// Pinned coroutines a worker holds before it looks at other workers when it is about to start
/// a new one (below it, a start costs no read of another worker's line).
pub(super) const BALANCE_MIN: usize = 16;

/// How many more pinned coroutines (at least; or an eighth more, if that is larger) this
/// worker must hold than another before it hands that one a coroutine to start.
const BALANCE_SLACK: usize = 8;

impl WorkerCtx {
    /// Where a never-run coroutine about to start here should start instead, if anywhere:
    /// one other worker (round robin), when it holds clearly fewer pinned coroutines than
    /// this one (see the module comment).
    pub(super) fn placement(&self) -> Option<usize> {
        let n = self.rt.workers.len();
        if n < 2 {
            return None;
        }
        let k = self.balance_next.get();
        self.balance_next.set(k.wrapping_add(1));
        let other = (self.index + 1 + k % (n - 1)) % n;
        let o = &self.rt.workers[other];
        // Only to a worker seen to switch coroutines since we last looked (or idle): one that
        // stays in one coroutine may be stuck in a long one, and its inbox, unlike a ring,
        // cannot be stolen from. The first look only records.
        // Relaxed (both): statistics written by that worker; a stale value only skips or
        // picks one hand-over.
        let sw = o.counters.switches.load(Ordering::Relaxed);
        let seen = self.seen_switches[other].replace(sw);
        if seen == u64::MAX || (sw == seen && o.running_id.load(Ordering::Relaxed) != 0) {
            return None;
        }
        // Relaxed (all): load estimates; a stale value only misplaces one coroutine (the
        // hand-over itself is `send_to`'s, with its own ordering).
        let mine = self.w.pinned.0.load(Ordering::Relaxed);
        // Saturating: estimates read while their writers move them, never worth a panic.
        let theirs = (o.pinned.0.load(Ordering::Relaxed))
            .saturating_add(o.inbox_len.load(Ordering::Relaxed));
        (mine > theirs.saturating_add(BALANCE_SLACK.max(theirs / 8))).then_some(other)
    }
}

/// Counts a coroutine pinned to (started on) or finished on this worker.
#[inline]
pub(super) fn bump_pinned(c: &WorkerCtx, by: isize) {
    // Relaxed: this worker is the only writer (a plain load + store); readers take it as an
    // estimate (`placement`, `stats`), so it pairs with nothing.
    let p = &c.w.pinned.0;
    p.store(
        p.load(Ordering::Relaxed).wrapping_add_signed(by),
        Ordering::Relaxed,
    );
}
