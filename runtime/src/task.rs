//! Tasks: the runtime's goroutines (Go's `g`).
//!
//! A [`Task`] owns one corosensei coroutine on a slab stack, plus the header every other
//! thread may read: id, name, spawn site, scheduling state, owning worker. Its spawn closure
//! and then its result live inline in the task (`Task::slot`, see slot.rs), so a task is one
//! cell of the task pool ([`TaskRef`], slab.rs), which goes back to the pool, to be reused by a
//! later spawn, once nothing references it.
//!
//! The header is kept to 88 bytes (a 96-byte cell; every byte counts because a `JoinHandle`
//! keeps it alive after the coroutine finished, and a burst of spawns pays mostly for fresh
//! pages): what only a started task needs and only its owner thread touches (the corosensei
//! coroutine, its stack and its yielder: [`Ext`], task/ext.rs) lives in the top bytes of the
//! task's own stack slot, recycled hot with the stack; the spawn site and the rare name share
//! one word (`CoroIdent`), the closure-or-result buffer is 24 bytes (slot.rs) and its two
//! flag bytes sit with the other small fields, the birth time and stack size are `u32`s, the
//! owner a `u16` (at most [`MAX_WORKERS`] workers), and the park-time stack pointer hint a
//! `u16` count of cache lines below the `Ext`.
//!
//! # State machine
//! `state` packs a phase (`RUNNABLE`, `RUNNING`, `PARKED`, `DONE`) and a `NOTIFIED` bit:
//! - `RUNNABLE` is the phase of a task that never ran; the owner worker moves it to `RUNNING`
//!   before the first resume, preserving `NOTIFIED`;
//! - a started task is `RUNNING` while it runs and while it is queued (after a yield or a
//!   wake-up): unparkers treat a queued task like a running one (they set `NOTIFIED`), so a
//!   separate queued phase would cost an atomic RMW per switch and buy nothing (the goroutine
//!   dump tells queued from running by the workers' `running_id`);
//! - the task itself, in [`Task::park`], either consumes `NOTIFIED` and returns, or moves
//!   `RUNNING -> PARKED` and suspends;
//! - [`Task::unpark`] (any thread) moves `PARKED -> RUNNING` and enqueues the task on its
//!   owner, or sets `NOTIFIED` when the task is not parked, so no wake-up is ever lost. A
//!   parked task keeps the count its run queue held, and the unparker that moves it out of
//!   `PARKED` takes that count back for the queue (`Task::unpark_raw`): no reference-count
//!   RMW per park/wake-up pair.
//!
//! Park has `std::thread::park` semantics: it may return spuriously, and every waiter loops
//! on its own condition. This replaces Go's `gopark`/`goready` pair and its commit
//! callbacks with a token, which makes every wait protocol in gort a plain loop.
//!
//! # Soundness (see docs/soundness.md)
//! The coroutine inside a task is touched only by the thread of its owner worker once it has
//! started; before its first resume its stack holds only the `Send` closure, so the task may
//! move to (be stolen by) another worker. That is the whole argument for the `Send`/`Sync`
//! impls below. A task dropped while suspended leaks its stack instead of unwinding it on a
//! foreign thread.
use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU8, Ordering};

use corosensei::CoroutineResult;

use crate::overflow::{self, CoroIdent};
use crate::sched::Shared;
use crate::slab::{Pool, Pooled, Ref};
use crate::slot::{Slot, SlotFlags};
use crate::stack::SlabStack;

/// Why a coroutine handed control back to its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// `yield_now`: requeue at the back of the local queue.
    Yield,
    /// `park`: the state is already `PARKED`; whoever unparks it requeues it.
    Park,
}

const PHASE: u8 = 0b011;
pub(crate) const RUNNABLE: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const PARKED: u8 = 2;
pub(crate) const DONE: u8 = 3;
const NOTIFIED: u8 = 0b100;

/// What a parked task waits for, for the goroutine dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WaitReason {
    /// Not waiting on anything in particular (generic park).
    Other = 0,
    /// Waiting for an fd to become readable.
    FdRead = 1,
    /// Waiting for an fd to become writable.
    FdWrite = 2,
    /// Sleeping on a timer.
    Timer = 3,
    /// Joining another coroutine.
    Join = 4,
    /// Channel send or receive, or `select!`.
    Chan = 5,
    /// A sync primitive (mutex, wait group, ...).
    Sync = 6,
    /// Waiting for a job on the blocking pool.
    Blocking = 7,
}

impl WaitReason {
    fn from_u8(v: u8) -> WaitReason {
        match v {
            1 => WaitReason::FdRead,
            2 => WaitReason::FdWrite,
            3 => WaitReason::Timer,
            4 => WaitReason::Join,
            5 => WaitReason::Chan,
            6 => WaitReason::Sync,
            7 => WaitReason::Blocking,
            _ => WaitReason::Other,
        }
    }
}

/// Bytes below the park-time stack pointer that `prefetch_stack` loads (the switch frame).
const PREFETCH_BELOW: usize = 256;
/// Cache lines `prefetch_stack` loads, from `PREFETCH_BELOW` under the park-time stack
/// pointer upwards (the frames a resume returns through).
const PREFETCH_LINES: usize = 16;

/// A cache prefetch hint for the line holding `addr` (any address: it is never dereferenced).
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is part of SSE, which every x86_64 CPU has; a prefetch never faults
    // and has no architectural effect, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Prefetch hint for the task header at `addr` (a `Ref<Task>` pointer as an address: the
/// cell's count word before it and the header after it; never dereferenced, 0 is ignored).
#[inline(always)]
pub(crate) fn prefetch_header(addr: usize) {
    if addr != 0 {
        prefetch(addr.wrapping_sub(8));
        prefetch(addr.wrapping_add(std::mem::size_of::<Task>() - 1));
    }
}

/// One coroutine and its scheduling header (88 bytes: a pool cell of 96).
pub(crate) struct Task {
    pub(crate) ident: CoroIdent,
    pub(crate) rt: &'static Shared,
    state: AtomicU8,
    wait: AtomicU8,
    /// The join state of `slot` and what it holds (slot.rs), packed with the small fields.
    pub(crate) slot_flags: SlotFlags,
    /// Owning worker; written once by the first worker to run the task (before the resume
    /// that makes it observable as `RUNNING`), read by unparkers after they observed `PARKED`.
    pub(crate) owner: Owner,
    /// Requested usable stack size in KiB, rounded up (saturated: a size past `u32::MAX` KiB
    /// is past the pool's limit too, so the allocation still fails as too large).
    stack_kib: u32,
    /// Spawn time: `Shared::coarse_clock - Shared::epoch` in units of [`BORN_UNIT`] ns
    /// (saturated), see [`BORN_SHIFT`] and [`Task::born`].
    born: u32,
    /// Owner-thread-only: the run-time half in the task's stack slot (see [`Ext`]); null
    /// before the first run (unless the spawn allocated the stack) and after the finish.
    /// Atomic only so that a poller may read it as a prefetch address (`prefetch_stack`):
    /// the owner's Relaxed loads and stores are plain moves, and a steal hands a task (and
    /// this pointer) over through the run queue's release/acquire.
    ext: AtomicPtr<Ext>,
    /// The spawn closure, then the result for the `JoinHandle` (one allocation per spawn).
    pub(crate) slot: Slot,
    /// Roughly the stack pointer at the last park, as cache lines below the `Ext` at the top
    /// of the stack slot (a hint for `prefetch_stack`; 0: none, or deeper than a `u16`
    /// counts, 4 MiB): 2 bytes instead of an 8-byte address.
    ///
    /// Until the coroutine first parks, it holds instead the length of the coroutine's
    /// scratch buffer in 64-byte lines (0: none; `Builder::spawn_with_buffer`), which
    /// `install` and `scratch` read before any park: the header has no spare bytes (88 of 88),
    /// and a never-parked task gets no prefetch (only tasks a poller wakes do).
    park_lines: AtomicU16,
}

/// `Task::born` counts units of 2^24 ns (~17 ms, finer than the coarse clock's ~50 ms
/// staleness); a `u32` of them spans two years.
const BORN_SHIFT: u32 = 24;

// The only non-thread-safe state is the `Ext` that `ext` points to (the pointer itself is
// atomic only for prefetch hints: its Relaxed accesses below are the owner's). It is used only by
// `Task::new` (before the task is shared), `Task::take_fresh`, `Task::install`,
// `Task::resume`, `Task::finish`, `Task::suspend`, `Task::set_yielder` and `Drop` (`&mut`),
// which the scheduler calls only on the thread of the task's owner worker, and only while the
// worker holds the task (popped from its own queues) or while the task runs on that thread.
// Before the first resume `ext` is null or holds only a `Send` stack (no coroutine), and the slot
// holds the `Send` closure (spawn requires it), so moving an unstarted task between threads
// (stealing) moves only `Send` data. Once started, a task is
// pinned (`owner` never changes), so thread-locals and `!Send` guards held across a park stay
// on the thread that created them. `Drop` never unwinds a suspended coroutine (it leaks it).
// SAFETY: by the rules above, only `Send` data ever crosses threads and the rest stays on the
// owner thread.
unsafe impl Send for Task {}
// SAFETY: see the `Send` impl: shared access from other threads touches only atomics and
// immutable fields.
unsafe impl Sync for Task {}

impl Task {
    /// A never-run task (the registry builds it in a task-pool cell; see registry.rs).
    #[inline]
    pub(crate) fn new(
        rt: &'static Shared,
        ident: CoroIdent,
        (stack_size, scratch_lines): (usize, u16),
        (slot_flags, slot): (SlotFlags, Slot),
        stack: Option<SlabStack>,
    ) -> Task {
        let ext = match stack {
            None => std::ptr::null_mut(),
            Some(s) => new_ext(s, 0, None),
        };
        // Relaxed: a timestamp; it publishes no other data (pairs with nothing).
        let now = rt.coarse_clock.load(Ordering::Relaxed);
        Task {
            ident,
            rt,
            state: AtomicU8::new(RUNNABLE),
            wait: AtomicU8::new(WaitReason::Other as u8),
            slot_flags,
            owner: Owner::new(),
            stack_kib: u32::try_from(stack_size.div_ceil(1024)).unwrap_or(u32::MAX),
            born: u32::try_from(now.saturating_sub(rt.epoch) >> BORN_SHIFT).unwrap_or(u32::MAX),
            ext: AtomicPtr::new(ext),
            slot,
            park_lines: AtomicU16::new(scratch_lines),
        }
    }

    /// Requested usable stack size in bytes (a KiB multiple; the pool rounds it up to pages).
    pub(crate) fn stack_size(&self) -> usize {
        (self.stack_kib as usize) << 10
    }

    /// Bytes kept at the top of the stack slot for the scratch buffer (0 for none); the pool
    /// must hand out `stack_size() + scratch_reserve()` usable bytes.
    /// Only before the coroutine's first park (see `park_lines`).
    pub(crate) fn scratch_reserve(&self) -> usize {
        crate::stack::scratch_reserve(self.scratch_lines())
    }

    /// The scratch buffer's length in 64-byte lines: only before the first park (see
    /// `park_lines`).
    pub(crate) fn scratch_lines(&self) -> u16 {
        // Relaxed: written at spawn (published with the task) and then only by the owner
        // thread, the caller.
        self.park_lines.load(Ordering::Relaxed)
    }

    /// `nanotime` at spawn, within 2^[`BORN_SHIFT`] ns (and the coarse clock's staleness).
    pub(crate) fn born(&self) -> u64 {
        self.rt.epoch + ((self.born as u64) << BORN_SHIFT)
    }

    pub(crate) fn phase(&self) -> u8 {
        self.state.load(Ordering::Acquire) & PHASE
    }

    pub(crate) fn wait_reason(&self) -> WaitReason {
        WaitReason::from_u8(self.wait.load(Ordering::Relaxed))
    }

    /// Resumes the coroutine on the owner thread.
    ///
    /// # Safety
    /// Must be called on the owner worker's thread, after `install`, never re-entrantly.
    #[inline]
    pub(crate) unsafe fn resume(&self) -> CoroutineResult<Suspend, ()> {
        // First run only: phase RUNNABLE (0) -> RUNNING (1), keeping NOTIFIED (an unparker may
        // set it concurrently, hence an RMW). A woken task is already RUNNING: the Acquire load
        // pairs with the unparker's AcqRel CAS in `unpark` (we see what it wrote before waking
        // us), and the AcqRel RMW with the CAS of an unparker that set NOTIFIED meanwhile.
        if self.state.load(Ordering::Acquire) & PHASE != RUNNING {
            self.state.fetch_or(RUNNING, Ordering::AcqRel);
        }
        // (The overflow handler names the coroutine through the worker's current task.)
        // Relaxed: owner-thread-only (see `ext`).
        let ext = self.ext.load(Ordering::Relaxed);
        if ext.is_null() {
            overflow::throw("Task::resume: task not started or finished");
        }
        // SAFETY: the caller guarantees we are on the owner thread and not re-entrant, so no
        // other reference to the coroutine exists (it touches only `yielder` itself).
        match unsafe { &mut *(*ext).coro.get() } {
            Some(c) => c.resume(()),
            None => overflow::throw("Task::resume: task not started"),
        }
    }

    /// Marks a task that could not start (no stack) as DONE.
    pub(crate) fn finish_unstarted(&self) {
        self.state.store(DONE, Ordering::Release);
    }

    /// Suspends the running coroutine (which must be `self`) back to its worker. Inlined:
    /// frames live across the switch cost mispredicted returns (see `spawn::yield_now`).
    #[inline]
    fn suspend(&self, why: Suspend) {
        // Relaxed: owner-thread-only (see `ext`).
        let ext = self.ext.load(Ordering::Relaxed);
        let y = if ext.is_null() {
            std::ptr::null()
        } else {
            // SAFETY: callers reach here only through `current_task`, inside the running
            // coroutine of `self` on its owner thread, so `ext` points to its live `Ext`.
            unsafe { (*ext).yielder.get() }
        };
        if y.is_null() {
            overflow::throw("Task::suspend: coroutine has no yielder");
        }
        // SAFETY: `yielder` was set by this coroutine's body on its first run and points into
        // the coroutine's own stack frame, which lives as long as the coroutine runs; we are
        // running inside that coroutine (callers reach here only through `current_task`).
        unsafe { (*y).suspend(why) };
    }

    /// `yield_now` for the running task.
    #[inline]
    pub(crate) fn yield_now(&self) {
        self.suspend(Suspend::Yield);
    }

    /// Parks the running task (which must be `self`) until unparked; may return spuriously.
    /// Inlined into its callers (see `spawn::yield_now`: one frame less across the switch).
    #[inline]
    pub(crate) fn park(&self, why: WaitReason) {
        // Every transition here is a read-modify-write, never a plain store: the caller checks
        // its wait condition right after `park` returns, and an unparker publishes the
        // condition right before its RMW on `state`. RMWs read the latest value in the
        // modification order of `state`, so either the unparker's RMW comes after ours (it sees
        // RUNNING or PARKED and leaves a token or wakes us), or ours comes after its RMW and,
        // acquiring it, we see the condition it published. A plain store here would let the
        // two threads read stale values past each other (store buffering), losing the wake-up.
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & NOTIFIED != 0 {
                // Consume the token. AcqRel: pairs with the unparker's AcqRel RMW.
                match self
                    .state
                    .compare_exchange(cur, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return,
                    Err(s) => {
                        cur = s;
                        continue;
                    }
                }
            }
            if cur != RUNNING {
                overflow::throw(&format!("Task::park: bad state {cur:#x}"));
            }
            // AcqRel: pairs with the unparker's RMW (see above).
            match self
                .state
                .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(s) => cur = s,
            }
        }
        self.wait.store(why as u8, Ordering::Relaxed);
        // Relaxed (a prefetch hint, pairs with nothing): a stale value costs a useless
        // prefetch. `ext` is our own (Relaxed: owner thread), non-null while we run.
        let lines = (self.ext.load(Ordering::Relaxed) as usize)
            .wrapping_sub(&cur as *const u8 as usize)
            / 64;
        self.park_lines
            .store(u16::try_from(lines).unwrap_or(0), Ordering::Relaxed);
        // We run on our owner worker, the only writer of its counters.
        let c = &self.rt.workers[self.owner.load(Ordering::Relaxed)].counters;
        bump(&c.parked);
        self.suspend(Suspend::Park);
        bump(&c.unparked);
        self.wait.store(WaitReason::Other as u8, Ordering::Relaxed);
    }

    /// Starts loading the parked coroutine's top stack lines (the switch frame and the frames
    /// it returns through) into the cache. The poller calls it for each task an event wakes,
    /// so that the cache misses of many coroutines' cold stacks overlap instead of stalling
    /// each resume in turn.
    #[inline]
    pub(crate) fn prefetch_stack(&self) {
        // Relaxed: hints (see the store in `park`); the owner may change both concurrently
        // only while the task runs, and a stale address is harmless to a prefetch (which
        // never dereferences it).
        let lines = self.park_lines.load(Ordering::Relaxed) as usize;
        let ext = self.ext.load(Ordering::Relaxed) as usize;
        if lines == 0 || ext == 0 {
            return;
        }
        let base = ((ext & !63).wrapping_sub(lines * 64)).wrapping_sub(PREFETCH_BELOW);
        for i in 0..PREFETCH_LINES {
            prefetch(base.wrapping_add(i * 64));
        }
        // The `Ext` (top of the stack slot) that `resume` reads first.
        prefetch(ext);
    }
}

/// A counted reference to a task (an `Arc` whose memory comes from the task pool, slab.rs).
pub(crate) type TaskRef = Ref<Task>;

/// Every task header of the process lives in this pool (Go's `allgs` memory and `gFree`).
static TASKS: Pool<Task> = Pool::new();

/// See `slab::Pool::prefault_ahead` (the monitor's part in a burst of spawns).
pub(crate) fn prefault_ahead() {
    TASKS.prefault_ahead();
}

impl Pooled for Task {
    fn pool() -> &'static Pool<Task> {
        &TASKS
    }
}

impl Ref<Task> {
    /// Wakes the task: makes a parked task runnable on its owner worker, or leaves a
    /// notification that its next `park` consumes.
    pub(crate) fn unpark(&self) {
        // SAFETY: our `Ref` keeps the task's cell live during the call.
        unsafe { Task::unpark_raw(Ref::as_ptr(self)) }
    }

    /// [`Ref::unpark`] that spends the caller's reference (for callers that drop it anyway).
    pub(crate) fn unpark_owned(this: TaskRef) {
        this.unpark();
    }
}

impl Task {
    /// Wakes the task at `p` without a counted reference to it (see [`Ref::unpark`]).
    ///
    /// The run queue's count of a parked task: the worker keeps the count its queue held
    /// when it resumed the task (`run_task` holds it as a raw pointer and, when the task
    /// parks, leaves it with the parked task instead of dropping it). Whoever moves the task
    /// out of `PARKED` (exactly one caller, by the CAS in `unpark_transition`) takes that
    /// count for the run queue, so a wake-up costs no reference-count RMW.
    ///
    /// # Safety
    /// `p` points to a task whose cell stays live during the call: the caller holds a `Ref`,
    /// or the task has not finished and cannot finish before this call returns (the
    /// registry's count, see registry.rs, keeps an unfinished task's cell live).
    #[inline]
    pub(crate) unsafe fn unpark_raw(p: *const Task) {
        // SAFETY: caller contract (the same as ours).
        if let Some(t) = unsafe { Task::unpark_begin(p) } {
            let rt = t.rt;
            rt.ready(t);
        }
    }

    /// The part of [`Task::unpark_raw`] that needs the caller's guarantee: the state change.
    /// Returns the run queue's count when the caller moved the task out of `PARKED`; the
    /// caller must then make it runnable (`Shared::ready`).
    ///
    /// # Safety
    /// As for [`Task::unpark_raw`].
    #[inline]
    pub(crate) unsafe fn unpark_begin(p: *const Task) -> Option<TaskRef> {
        // SAFETY: caller contract: the cell is live.
        let t = unsafe { &*p };
        if !t.unpark_transition() {
            return None;
        }
        // SAFETY: we moved the task out of `PARKED`, which hands us the count its worker left
        // with the parked task (see above); the cell is live (it holds that count).
        Some(unsafe { TaskRef::from_raw(p) })
    }

    /// The state change of a wake-up; true if the caller moved the task out of `PARKED` and
    /// must make it runnable.
    #[inline]
    fn unpark_transition(&self) -> bool {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (new, wake) = match cur & PHASE {
                DONE => return false,
                // Straight to RUNNING (see the state machine): the owner needs no RMW to resume.
                PARKED => (RUNNING, true),
                // Even when NOTIFIED looks set, confirm with an RMW (`cur -> cur`): the plain
                // load may be stale, the token already consumed by a `park` whose condition
                // check did not yet see what our caller published (see `park`).
                _ => (cur | NOTIFIED, false),
            };
            // AcqRel: Release publishes what the waker wrote before waking (a channel value,
            // readiness) to the task, which acquires it in `park`/`resume`.
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return wake,
                Err(s) => cur = s,
            }
        }
    }
}

/// Increments a counter that only the calling worker writes (no locked RMW needed).
fn bump(c: &std::sync::atomic::AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

mod ext;
mod owner;
use ext::{new_ext, Ext};
pub(crate) use owner::{Owner, MAX_WORKERS, NO_OWNER};
