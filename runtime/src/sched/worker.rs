//! The worker loop (Go's `schedule` / `findRunnable` / `stopm`).
//!
//! Each worker thread owns a [`WorkerCtx`] (thread-local): `runnext` (the task readied most
//! recently on this worker, run next for latency, as Go's `runnext`), a local FIFO of pinned
//! runnable tasks (sched/local.rs, owner-thread only), and the id of the coroutine it runs.
//! Search order in [`find_runnable_slow`]: every 61st tick (shutdown,) timers and netpoll are
//! checked and the global injector, the fresh ring, then the local FIFO come first (fairness:
//! a pair of tasks waking each other through `runnext`, or a yield loop, cannot starve the
//! rest, and I/O, timers and shutdown are checked at least every 61 ticks); otherwise inbox,
//! runnext, local FIFO, fresh ring, injector, timers, netpoll, stealing, and finally sleep.
//!
//! Switch fast path ([`find_runnable`], [`run_task`]): when no periodic check is due, the
//! inbox is empty and the worker is not spinning, the slow search above would return
//! `runnext` or the local head anyway, so the fast path takes them directly. It is the only
//! code between two coroutine switches: `running_id` (watchdog) is cleared only when the
//! worker leaves it, and fresh-task setup and finishing are out of line.
//!
//! Sleeping (worker/idle.rs): an idle worker blocks in `epoll_wait` on its own epoll
//! instance (the one holding the timer role bounds it by the nearest timer). Before it
//! sleeps it publishes its state, then re-checks every source of work (see sched/mod.rs for
//! the ordering argument).
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering;

use corosensei::{CoroutineResult, Yielder};

use super::local::LocalQueue;
use super::{Shared, WorkerShared};
use crate::slab::Cache;
use crate::stack::StackCache;
use crate::task::{Suspend, Task, TaskRef, NO_OWNER};
use crate::timer::nanotime;

mod idle;
mod place;
mod steal;
use idle::{sleep, spin_for_work};
use place::{bump_pinned, BALANCE_MIN};
use steal::{steal, LoneSeen};

pub(crate) struct WorkerCtx {
    pub(crate) rt: &'static Shared,
    /// `&rt.workers[index]`, cached: the switch path uses it several times.
    w: &'static WorkerShared,
    pub(crate) index: usize,
    runnext: Cell<Option<TaskRef>>,
    local: LocalQueue<TaskRef>,
    /// The task being resumed on this thread (null in scheduler code). Points at a task kept
    /// alive by the registry until it finishes.
    current: Cell<*const Task>,
    /// Ticks left until the periodic fairness check (counts down from `PERIOD - 1` to 0).
    tick: Cell<u32>,
    rng: Cell<u64>,
    spinning: Cell<bool>,
    /// Fast-path pops left that prefetch the next task's lines: set to the event count of
    /// this worker's last poll (see `find_runnable`).
    pipeline: Cell<u32>,
    /// Whether spinning has paid off lately (see `idle::spin_for_work`).
    spin_credit: Cell<i32>,
    /// This worker's warm stacks (no lock on the spawn/exit path; see stack/cache.rs).
    stacks: StackCache<'static>,
    /// Coroutine ids reserved for this worker's spawns: next, end (Go's `p.goidcache`).
    ids: Cell<(u64, u64)>,
    /// A victim's lone never-run task this worker waits to steal (see worker/steal.rs).
    lone_seen: Cell<LoneSeen>,
    /// Task-pool cells for this thread's spawns (no lock; see registry.rs).
    cells: RefCell<Cache<Task>>,
    /// Round-robin cursor over the other workers for `placement`.
    balance_next: Cell<usize>,
    /// Each worker's `switches` counter when `placement` last looked at it (`u64::MAX`:
    /// never).
    seen_switches: Box<[Cell<u64>]>,
}

/// Ids a worker reserves at once from `Shared::next_id`.
const ID_BATCH: u64 = 16;

thread_local! {
    static CTX: Cell<Option<&'static WorkerCtx>> = const { Cell::new(None) };
}

#[inline]
pub(crate) fn ctx() -> Option<&'static WorkerCtx> {
    CTX.with(|c| c.get())
}

/// The calling thread's context if it is a worker of `rt` (one thread-local read; a spawn
/// passes it down instead of looking it up again at every step).
#[inline]
pub(crate) fn ctx_of(rt: &Shared) -> Option<&'static WorkerCtx> {
    ctx().filter(|c| std::ptr::eq(c.rt, rt))
}

pub(crate) fn current_rt() -> Option<&'static Shared> {
    ctx().map(|c| c.rt)
}

pub(crate) fn current_index(rt: &Shared) -> Option<usize> {
    ctx().filter(|c| std::ptr::eq(c.rt, rt)).map(|c| c.index)
}

/// The running task, if the caller runs inside a coroutine.
#[inline]
pub(crate) fn current_task() -> Option<&'static Task> {
    let c = ctx()?;
    let p = c.current.get();
    if p.is_null() {
        return None;
    }
    // `current` is set only while this thread resumes that task, and the registry keeps the
    // task alive until it finishes, after its code (the only code that can see `current` as
    // non-null) has stopped running. The `'static` is a crate-internal convenience.
    // SAFETY: so `p` points to a live task while any caller can hold this reference.
    Some(unsafe { &*p })
}

/// The identity of the task this thread is resuming, or null; for the stack-overflow
/// handler. Async-signal-safe: `CTX` is a const-initialised thread-local without destructor
/// (a plain TLS load) and `current` a plain field. A non-null result stays valid while the
/// task is resumed (see [`current_task`]).
pub(crate) fn running_ident() -> *const crate::overflow::CoroIdent {
    match ctx() {
        Some(c) => {
            let p = c.current.get();
            if p.is_null() {
                return std::ptr::null();
            }
            // SAFETY: as in `current_task`: a non-null `current` points to a live task.
            unsafe { &(*p).ident }
        }
        None => std::ptr::null(),
    }
}

/// An owned handle to the running task.
pub(crate) fn current_task_arc() -> Option<TaskRef> {
    let t = current_task()? as *const Task;
    // SAFETY: every task lives in a task-pool cell, and this one is kept alive by the
    // registry's `TaskRef` while it runs, so taking one more count from its address is valid.
    Some(unsafe { TaskRef::clone_raw(t) })
}

/// Readies `task` on the current thread if it is the owner worker of `rt`.
#[inline]
pub(crate) fn try_ready_local(rt: &Shared, owner: usize, task: TaskRef) -> Result<(), TaskRef> {
    match ctx() {
        Some(c) if c.index == owner && std::ptr::eq(c.rt, rt) => {
            if let Some(old) = c.runnext.replace(Some(task)) {
                c.local.push_back(old);
            }
            Ok(())
        }
        _ => Err(task),
    }
}

impl WorkerCtx {
    /// This worker thread's task-pool cells, for `registry::insert`.
    #[inline]
    pub(crate) fn task_cells(&self) -> &RefCell<Cache<Task>> {
        &self.cells
    }

    /// A fresh coroutine id of this worker's runtime, from its reserved batch (one atomic RMW
    /// per [`ID_BATCH`] spawns, as Go's `goidcache`). Ids stay unique within the runtime;
    /// across workers they are not in spawn order.
    #[inline]
    pub(crate) fn next_id(&self) -> u64 {
        let (mut next, mut end) = self.ids.get();
        if next == end {
            // Relaxed: a unique-number counter; it publishes no data (pairs with nothing).
            next = self.rt.next_id.fetch_add(ID_BATCH, Ordering::Relaxed);
            end = next + ID_BATCH;
        }
        self.ids.set((next + 1, end));
        next
    }

    /// Counts a spawn and pushes the never-run task on this worker's ring (Go's `runqput` +
    /// `wakep`).
    #[inline]
    pub(crate) fn spawn_local(&self, task: TaskRef) {
        // Each worker is the only writer of its counters: a plain load + store (Relaxed, a
        // statistic: pairs with nothing).
        let c = &self.w.counters.spawned;
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if let Err(batch) = self.w.runq.push(task) {
            self.rt.inject_batch(batch);
        }
        self.rt.wake_idle();
    }
}

fn next_rand(c: &WorkerCtx) -> u64 {
    // xorshift64*
    let mut x = c.rng.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c.rng.set(x);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

pub(crate) fn worker_main(rt: &'static Shared, index: usize) {
    crate::overflow::init_thread();
    let _ = rt.workers[index].thread.set(std::thread::current());
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    rt.workers[index].tid.store(tid, Ordering::SeqCst);
    let c: &'static WorkerCtx = Box::leak(Box::new(WorkerCtx {
        rt,
        w: &rt.workers[index],
        index,
        runnext: Cell::new(None),
        local: LocalQueue::new(),
        current: Cell::new(std::ptr::null()),
        tick: Cell::new(PERIOD - 1),
        rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ ((index as u64 + 1) << 17)),
        spinning: Cell::new(false),
        pipeline: Cell::new(0),
        spin_credit: Cell::new(idle::SPIN_CREDIT_MAX / 2),
        stacks: StackCache::new(&rt.stacks),
        ids: Cell::new((0, 0)),
        lone_seen: Cell::new(None),
        cells: RefCell::new(Cache::new()),
        balance_next: Cell::new(0),
        seen_switches: rt.workers.iter().map(|_| Cell::new(u64::MAX)).collect(),
    }));
    CTX.with(|x| x.set(Some(c)));
    // Coroutine panics are caught on their own stacks (panic.rs): one that reaches here is the
    // scheduler's own, and a worker that died quietly would strand every coroutine pinned to
    // it, so it aborts with the message instead (Go's `throw`).
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while let Some(task) = find_runnable(c) {
            run_task(c, task);
        }
    }));
    if let Err(p) = r {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        crate::overflow::throw(&format!("worker_main: worker {index} panicked: {msg}"));
    }
    // The context is leaked: hand its unused task cells back to the pool.
    drop(c.cells.replace(Cache::new()));
    CTX.with(|x| x.set(None));
}

#[inline(always)]
fn run_task(c: &'static WorkerCtx, task: TaskRef) {
    let w = c.w;
    if task.owner.load(Ordering::Relaxed) != c.index && !start_fresh(c, &task) {
        return;
    }
    // The run queue's count of the task: held as a raw pointer while the task runs, and left
    // with the task when it parks (the unparker that moves it out of `PARKED` takes it back
    // for the run queue, see `Task::unpark_raw`), so a park/wake-up pair costs no
    // reference-count RMW.
    let p = TaskRef::into_raw(task);
    c.current.set(p);
    // SAFETY: `p` holds the count just given up by `task`, so the task is live.
    let t = unsafe { &*p };
    // `running_id` is cleared when the worker leaves the fast path (`find_runnable_slow`) or
    // does slower work between coroutines (`start_fresh`, `finish_task`), not after every
    // resume: between two resumes on the fast path the worker runs only the few instructions
    // of the switch, and the monitor keys on `switches` anyway.
    w.running_id.store(t.ident.id, Ordering::Relaxed);
    // Each worker is the only writer of its counters: a plain load+store is enough.
    let sw = &w.counters.switches;
    sw.store(sw.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    // SAFETY: we are the owner worker's thread (owner was just checked or claimed, and a task
    // sits in exactly one queue, so nobody else resumes it), and the worker loop never
    // resumes re-entrantly.
    let r = unsafe { t.resume() };
    c.current.set(std::ptr::null());
    match r {
        // The parked task keeps the count (see above); `t` is not used again.
        CoroutineResult::Yield(Suspend::Park) => {}
        CoroutineResult::Yield(Suspend::Yield) => {
            // The phase stays RUNNING while queued (see the state machine in task.rs).
            // SAFETY: the count given up above, taken back once (the task did not park).
            c.local.push_back(unsafe { TaskRef::from_raw(p) });
        }
        // SAFETY: as for `Yield`.
        CoroutineResult::Return(()) => finish_task(c, unsafe { TaskRef::from_raw(p) }),
    }
}

/// The task is not pinned to us: it must be a never-run task, which we claim and give a
/// coroutine. False if it did not start here: it went to a less loaded worker (`placement`),
/// or it could not start (no stack) and is then finished.
#[cold]
#[inline(never)]
fn start_fresh(c: &'static WorkerCtx, task: &TaskRef) -> bool {
    // Between coroutines (a stack allocation may take a while): see `run_task`.
    c.w.running_id.store(0, Ordering::Relaxed);
    if task.owner.load(Ordering::Relaxed) != NO_OWNER {
        crate::overflow::throw("run_task: task pinned to another worker");
    }
    // Relaxed: our own counter (we are its only writer).
    if c.w.pinned.0.load(Ordering::Relaxed) >= BALANCE_MIN {
        if let Some(to) = c.placement() {
            // Not started: any worker may start it, and only `to` drains its inbox.
            c.rt.send_to(to, task.clone());
            return false;
        }
    }
    // SAFETY: we are about to become the owner (claimed just below); no resume happened.
    let pre = unsafe { task.take_fresh() };
    // Release: pairs with the Acquire load in `Shared::ready`.
    task.owner.store(c.index, Ordering::Release);
    bump_pinned(c, 1);
    let stack = match pre {
        Some(s) => Ok(s),
        None => c.rt.stacks.alloc(
            task.stack_size().saturating_add(task.scratch_reserve()),
            Some(&c.stacks),
        ),
    };
    match stack {
        Ok(stack) => {
            let body = move |y: &Yielder<(), Suspend>, ()| {
                match current_task() {
                    Some(t) => {
                        t.set_yielder(y);
                        // SAFETY: this body runs once, for the task whose `take_fresh`
                        // ran on this, its owner, thread.
                        unsafe { t.slot.start(&t.slot_flags, None) };
                    }
                    None => crate::overflow::throw("coroutine body: no current task"),
                }
            };
            // SAFETY: owner thread, right after take_fresh.
            unsafe { task.install(stack, body) };
            true
        }
        Err(e) => {
            eprintln!("gort: coroutine {} could not start: {e}", task.ident.id);
            // SAFETY: `take_fresh` ran just above on this thread (and, by the `owner` check,
            // once), and the closure is never run (no coroutine was built).
            unsafe { task.slot.start(&task.slot_flags, Some(e)) };
            task.finish_unstarted();
            // SAFETY: every task is spawned through `registry::insert`, and it finishes once.
            unsafe { crate::registry::release(task) };
            // Only this worker writes its counters (see `switches` in `run_task`).
            let f = &c.w.counters.finished;
            f.store(f.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            bump_pinned(c, -1);
            false
        }
    }
}

#[cold]
#[inline(never)]
fn finish_task(c: &'static WorkerCtx, task: TaskRef) {
    c.w.running_id.store(0, Ordering::Relaxed);
    // SAFETY: owner thread, the coroutine just returned.
    let stack = unsafe { task.finish() };
    c.rt.stacks.free(stack, Some(&c.stacks));
    // SAFETY: every task is spawned through `registry::insert`, and it finishes once.
    unsafe { crate::registry::release(&task) };
    // Only this worker writes its counters (see `switches` in `run_task`).
    let f = &c.w.counters.finished;
    f.store(f.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    bump_pinned(c, -1);
}

#[inline]
fn drain_inbox(c: &WorkerCtx) -> bool {
    if c.w.inbox_len.load(Ordering::SeqCst) == 0 {
        return false;
    }
    drain_inbox_slow(c)
}

#[cold]
fn drain_inbox_slow(c: &WorkerCtx) -> bool {
    let w = c.w;
    let mut inbox = w.inbox.lock().unwrap_or_else(|e| e.into_inner());
    let n = inbox.len();
    w.inbox_len.fetch_sub(n, Ordering::SeqCst);
    c.local.push_all(inbox.drain(..));
    n > 0
}

fn pop_local(c: &WorkerCtx) -> Option<TaskRef> {
    c.local.pop_front()
}

/// Is `runnext` set? (A `Cell` cannot be peeked at: take and put back.)
fn has_runnext(c: &WorkerCtx) -> bool {
    let t = c.runnext.take();
    let some = t.is_some();
    c.runnext.set(t);
    some
}

/// Takes one task from the injector and moves a batch into our ring (Go's `globrunqget`).
fn take_injector(c: &WorkerCtx) -> Option<TaskRef> {
    let rt = c.rt;
    if rt.injector_len.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let mut q = rt.injector.lock().unwrap_or_else(|e| e.into_inner());
    let first = q.pop_front()?;
    let extra = (q.len() / rt.nworkers()).min(64);
    c.w.runq.push_from(&mut q, extra);
    rt.injector_len.store(q.len(), Ordering::SeqCst);
    drop(q);
    Some(first)
}

/// Non-blocking netpoll plus expired timers; readies what they wake.
fn poll_and_timers(c: &'static WorkerCtx) {
    let rt = c.rt;
    let now = nanotime();
    if rt.next_timer() <= now {
        rt.run_timers(now);
    }
    if c.w.poller.has_registrations() {
        if let Some(n) = c.w.poller.try_poll() {
            c.w.counters.polls.fetch_add(1, Ordering::Relaxed);
            c.pipeline.set(n as u32);
        }
    }
}

fn found(c: &'static WorkerCtx, t: TaskRef) -> Option<TaskRef> {
    if c.spinning.replace(false) {
        // We stop spinning: if we were the last spinner and work remains, wake another
        // (Go's `resetspinning`).
        if c.rt.nspinning.fetch_sub(1, Ordering::SeqCst) == 1 && c.rt.has_stealable() {
            c.rt.wake_idle();
        }
    }
    Some(t)
}

/// Ticks between fairness checks (Go's `schedtick % 61`).
const PERIOD: u32 = 61;

/// The fast path of the worker loop: while no periodic check is due, nothing waits in the
/// inbox and we are not spinning, the next task is `runnext` or the head of the local FIFO.
/// Everything else (and the order that makes it fair) is in [`find_runnable_slow`].
#[inline(always)]
fn find_runnable(c: &'static WorkerCtx) -> Option<TaskRef> {
    let tick = c.tick.get();
    if tick != 0 && c.w.inbox_len.load(Ordering::SeqCst) == 0 && !c.spinning.get() {
        if let Some(t) = c.runnext.take().or_else(|| c.local.pop_front()) {
            c.tick.set(tick - 1);
            // Software pipelining after a netpoll batch (up to 128 tasks woken at once, whose
            // prefetches in the poller are evicted by the time the later ones run): start
            // loading the cold lines of the next task while this one runs.
            // Two stages: the header of the task two pops ahead (its stack address is in it),
            // then the stack of the next one, whose header was requested a pop ago.
            let k = c.pipeline.get();
            if k != 0 {
                c.pipeline.set(k - 1);
                c.local.peek_with(1, |n| {
                    crate::task::prefetch_header(&**n as *const Task as usize)
                });
                c.local.peek_with(0, |n| n.prefetch_stack());
            }
            return Some(t);
        }
    }
    find_runnable_slow(c)
}

#[inline(never)]
fn find_runnable_slow(c: &'static WorkerCtx) -> Option<TaskRef> {
    let rt = c.rt;
    let me = c.w;
    // Out of the switch fast path: no coroutine runs now (see `run_task`).
    me.running_id.store(0, Ordering::Relaxed);
    loop {
        if rt.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        let tick = c.tick.get();
        if tick == 0 {
            c.tick.set(PERIOD - 1);
            poll_and_timers(c);
            drain_inbox(c);
            // Fresh (ring) before local: yielders sit in `local` and would starve the ring.
            if let Some(t) = take_injector(c)
                .or_else(|| me.runq.pop())
                .or_else(|| pop_local(c))
            {
                return found(c, t);
            }
        } else {
            c.tick.set(tick - 1);
        }
        drain_inbox(c);
        let next = c.runnext.take();
        if let Some(t) = next.or_else(|| pop_local(c)) {
            return found(c, t);
        }
        if let Some(t) = me.runq.pop() {
            // Fresh tasks run back to back: start loading the next one's header (written on
            // the spawner's core, so a cache miss each) while this one starts and runs.
            crate::task::prefetch_header(me.runq.peek_hint());
            return found(c, t);
        }
        if let Some(t) = take_injector(c) {
            return found(c, t);
        }
        // Timers and netpoll may ready pinned tasks (into runnext/local/inboxes).
        poll_and_timers(c);
        if has_runnext(c) || !c.local.is_empty() || drain_inbox(c) {
            continue;
        }
        if let Some(t) = steal(c) {
            return found(c, t);
        }
        if spin_for_work(c) {
            continue;
        }
        sleep(c);
    }
}
