//! Parking: the one blocking primitive everything else is built on.
//!
//! [`park`] blocks the caller until an [`Unparker`] for it is used (or spuriously), like
//! `std::thread::park`: inside a coroutine it parks only the coroutine and the worker runs
//! other work; on a plain thread it parks the thread. Every waiter in gort (PollDesc,
//! channels, mutexes, join) loops on its own condition around `park`, so spurious returns and
//! late unparks are harmless, and an unpark that comes before the park is never lost (it
//! leaves a token).
//!
//! An [`Unparker`] holds a counted reference to its coroutine (or thread), so it may outlive
//! the wait. A waiter whose owner stays in the wait until the waker is done with it (channel
//! records) uses a `BorrowedUnparker` instead, which counts nothing; waking through either
//! costs no reference count for the run queue (see `Task::unpark_raw`).
//!
//! Go counterpart: `gopark`/`goready`. Go passes a commit callback to `gopark` to close the
//! race between deciding to sleep and sleeping; the token makes that unnecessary here.
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::sched::worker;
use crate::task::{Task, TaskRef, WaitReason};
use crate::timer::{self, TimerAction};

/// Wakes one parked coroutine or thread. Cheap to clone; unparking twice is harmless.
#[derive(Clone)]
pub struct Unparker {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Task(TaskRef),
    Thread(Arc<Thread>),
}

impl Unparker {
    /// Wakes the coroutine or thread (or makes its next [`park`] return at once).
    pub fn unpark(&self) {
        match &self.inner {
            Inner::Task(t) => t.unpark(),
            Inner::Thread(t) => t.unpark(),
        }
    }

    /// Hints that the coroutine will soon be resumed: starts loading its stack lines.
    #[inline]
    pub(crate) fn prefetch(&self) {
        if let Inner::Task(t) = &self.inner {
            t.prefetch_stack();
        }
    }

    /// [`Unparker::unpark`] that consumes the unparker (for callers that drop it right after;
    /// a woken coroutine's run queue needs no reference of ours, see `Task::unpark_raw`).
    #[inline]
    pub fn wake(self) {
        match self.inner {
            Inner::Task(t) => TaskRef::unpark_owned(t),
            Inner::Thread(t) => t.unpark(),
        }
    }

    /// True if both wake the same coroutine or thread.
    pub fn same_as(&self, other: &Unparker) -> bool {
        match (&self.inner, &other.inner) {
            (Inner::Task(a), Inner::Task(b)) => TaskRef::ptr_eq(a, b),
            (Inner::Thread(a), Inner::Thread(b)) => a.id() == b.id(),
            _ => false,
        }
    }

    /// Encodes into a word for lock-free slots: an aligned `TaskRef` or `Arc` pointer, low bit
    /// set for a thread. The word is never 0..8, so callers may use those values as markers.
    pub(crate) fn into_raw(self) -> usize {
        match self.inner {
            Inner::Task(t) => TaskRef::into_raw(t) as usize,
            Inner::Thread(t) => Arc::into_raw(t) as usize | 1,
        }
    }

    /// Prefetches the task header behind a waiter word (a word from [`Unparker::into_raw`],
    /// or any other value, which is ignored). Never dereferences it, so a word that a racing
    /// thread consumes meanwhile is harmless.
    #[inline]
    pub(crate) fn prefetch_raw(raw: usize) {
        // Words of tasks are `TaskRef` value pointers (8-aligned, low bit clear); the slot
        // markers (0 and 4 in netpoll) fall below any mapped address.
        if raw & 1 == 0 && raw > 4096 {
            // The cell's count sits just before the value; the header spans a few lines.
            let start = raw.wrapping_sub(std::mem::size_of::<usize>());
            for i in 0..4 {
                crate::task::prefetch(start.wrapping_add(i * 64));
            }
        }
    }

    /// Decodes a word made by [`Unparker::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and be decoded at most once.
    pub(crate) unsafe fn from_raw(raw: usize) -> Unparker {
        if raw & 1 == 1 {
            Unparker {
                // SAFETY: caller contract: this is an `Arc<Thread>` pointer from `into_raw`.
                inner: Inner::Thread(unsafe { Arc::from_raw((raw & !1) as *const Thread) }),
            }
        } else {
            Unparker {
                // SAFETY: caller contract: this is a `TaskRef` pointer from `into_raw`.
                inner: Inner::Task(unsafe { TaskRef::from_raw(raw as *const Task) }),
            }
        }
    }
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Task(t) => write!(f, "Unparker(coroutine {})", t.ident.id),
            Inner::Thread(t) => write!(f, "Unparker(thread {:?})", t.id()),
        }
    }
}

/// An unparker that borrows its coroutine or thread instead of holding a counted reference:
/// for wait records whose owner stays inside the wait until the waker is done with the
/// record, as channel waiters do (chan/waiter.rs). Making one and waking through it cost no
/// reference-count RMW, unlike [`Unparker`].
pub(crate) struct BorrowedUnparker(Borrowed);

#[derive(Clone, Copy)]
enum Borrowed {
    Task(*const Task),
    Thread(*const Thread),
}

// The pointers are only dereferenced by `begin_wake`, whose contract keeps their targets
// alive; a `Task` and a `Thread` are both `Sync`, and waking is what they are shared for.
// SAFETY: so sending or sharing the unparker only shares those `Sync` values.
unsafe impl Send for BorrowedUnparker {}
// SAFETY: as for `Send`.
unsafe impl Sync for BorrowedUnparker {}

impl BorrowedUnparker {
    /// An unparker for the caller: its coroutine, or its thread outside coroutines.
    #[inline]
    pub(crate) fn current() -> BorrowedUnparker {
        BorrowedUnparker(match worker::current_task() {
            Some(t) => Borrowed::Task(t),
            None => Borrowed::Thread(THREAD_UNPARKER.with(Arc::as_ptr)),
        })
    }

    /// Parks the caller, like [`park_reason`], without looking up the running coroutine
    /// again: this unparker names it.
    ///
    /// # Safety
    /// The caller is the coroutine (or, outside coroutines, the thread) that made this
    /// unparker with [`BorrowedUnparker::current`].
    #[inline]
    pub(crate) unsafe fn park_own(&self, why: WaitReason) {
        match self.0 {
            // SAFETY: caller contract: `p` is the running task, live while it runs.
            Borrowed::Task(p) => park_task(unsafe { &*p }, why),
            Borrowed::Thread(_) => thread::park(),
        }
    }

    /// Starts waking the coroutine or thread: does everything that needs it to be alive, and
    /// returns the rest as a [`Wake`], which needs no borrow.
    ///
    /// # Safety
    /// The coroutine or thread that made this unparker (with [`BorrowedUnparker::current`])
    /// has not returned from the wait it made it for, and does not before this call returns.
    /// So the coroutine has not finished (the registry's count keeps its cell live, see
    /// registry.rs) and the thread is alive (its `THREAD_UNPARKER` too).
    #[inline]
    pub(crate) unsafe fn begin_wake(&self) -> Wake {
        Wake(match self.0 {
            // SAFETY: caller contract: the task has not finished.
            Borrowed::Task(p) => unsafe { Task::unpark_begin(p) }.map(Woken::Task),
            // SAFETY: caller contract: the thread, hence its `THREAD_UNPARKER`, is alive.
            Borrowed::Thread(p) => Some(Woken::Thread(unsafe { (*p).clone() })),
        })
    }
}

/// The rest of a wake-up begun by [`BorrowedUnparker::begin_wake`], done on drop: makes the
/// coroutine runnable (if the wake-up moved it out of `PARKED`) or unparks the thread.
#[must_use = "dropping a Wake completes the wake-up"]
pub(crate) struct Wake(Option<Woken>);

enum Woken {
    Task(TaskRef),
    Thread(Thread),
}

impl Drop for Wake {
    #[inline]
    fn drop(&mut self) {
        match self.0.take() {
            Some(Woken::Task(t)) => {
                let rt = t.rt;
                rt.ready(t);
            }
            Some(Woken::Thread(t)) => t.unpark(),
            None => {}
        }
    }
}

thread_local! {
    static THREAD_UNPARKER: Arc<Thread> = Arc::new(thread::current());
}

/// An [`Unparker`] for the caller: its coroutine, or its thread outside coroutines.
pub fn unparker() -> Unparker {
    match worker::current_task_arc() {
        Some(t) => Unparker {
            inner: Inner::Task(t),
        },
        None => Unparker {
            inner: Inner::Thread(THREAD_UNPARKER.with(|t| t.clone())),
        },
    }
}

/// True when called from inside a gort coroutine.
pub fn in_coroutine() -> bool {
    worker::current_task().is_some()
}

/// Blocks the caller until unparked; may return spuriously (loop on your condition).
pub fn park() {
    park_reason(WaitReason::Other)
}

/// [`park`] that records what the coroutine waits for (shown in goroutine dumps).
#[inline]
pub fn park_reason(why: WaitReason) {
    match worker::current_task() {
        Some(t) => t.park(why),
        None => thread::park(),
    }
}

/// [`park_reason`] for the running task `t`, out of line (the switch's frame stays out of
/// its callers).
#[inline(never)]
fn park_task(t: &Task, why: WaitReason) {
    t.park(why)
}

/// Blocks until unparked or until `deadline` passes; may return spuriously. Returns true if
/// the deadline has passed.
pub fn park_deadline(deadline: Instant, why: WaitReason) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return true;
    }
    match worker::current_task() {
        Some(t) => {
            let me = unparker();
            let h =
                timer::add_timer_nanos(timer::instant_to_nanos(deadline), TimerAction::Unpark(me));
            t.park(why);
            h.cancel();
        }
        None => thread::park_timeout(deadline - now),
    }
    Instant::now() >= deadline
}

/// [`park_deadline`] with a relative timeout.
pub fn park_timeout(timeout: Duration, why: WaitReason) -> bool {
    match Instant::now().checked_add(timeout) {
        Some(d) => park_deadline(d, why),
        None => {
            park_reason(why);
            false
        }
    }
}
