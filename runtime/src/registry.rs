//! The set of live tasks (Go's `allgs`), for the goroutine dump and the watchdog, and where
//! spawns get task memory.
//!
//! What: every task lives in a cell of the process-wide task pool (slab.rs), and the pool
//! doubles as the registry, as Go's `allgs` holds every `g` ever made: [`snapshot`] and
//! [`find`] walk every cell ever carved and keep the live tasks of the asked runtime. So a
//! spawn registers nothing and takes no lock: it builds its task in a cell of the spawning
//! worker's own cache (`WorkerCtx::cells`, no lock; plain threads share [`OUTSIDE`]). That
//! makes the walk cost time in proportion to the most tasks ever alive at once, which only a
//! dump or a watchdog report pays.
//!
//! Invariant: a spawned task holds one count of its own cell (the "registry's reference"),
//! taken by [`insert`] and dropped by [`release`] when the task finishes (or fails to start),
//! so a coroutine parked forever with no other reference stays alive and listed, as a
//! leaked goroutine does in Go. Every other count belongs to a `TaskRef` (queues, the
//! `JoinHandle`, `Unparker`s), or is the run-queue count that a parked task keeps until its
//! waker takes it back (`Task::unpark_raw`); when the last one goes, the cell returns to the
//! pool (Go's `gfput`) and a later spawn reuses it (`gfget`). Because the registry's count
//! lasts until the task finishes, code that knows a task has not finished (a channel waiter
//! blocked in its operation) may reach it without a count of its own (`BorrowedUnparker`).
use std::sync::Mutex;

use crate::sched::worker::WorkerCtx;
use crate::sched::Shared;
use crate::slab::{Cache, Pooled};
use crate::task::{Task, TaskRef, DONE};

/// Cells for spawns from threads that are not workers.
static OUTSIDE: Mutex<Cache<Task>> = Mutex::new(Cache::new());

/// Builds the task `make` returns in a pool cell (from the cache of `worker`, the calling
/// worker thread's context, else [`OUTSIDE`]) and returns two references to it (for the run
/// queue and the `JoinHandle`), keeping a third count for the registry until [`release`].
#[inline]
pub(crate) fn insert(
    worker: Option<&WorkerCtx>,
    make: impl FnOnce() -> Task,
) -> (TaskRef, TaskRef) {
    // The three counts are set at once (no atomic increments).
    let task = match worker {
        Some(c) => c.task_cells().borrow_mut().alloc_with(3, make),
        None => OUTSIDE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .alloc_with(3, make),
    };
    // SAFETY: one of the two extra counts `alloc_with` gave us; the other is the registry's,
    // taken back by `release`.
    let second = unsafe { TaskRef::from_raw(TaskRef::as_ptr(&task)) };
    (task, second)
}

/// Drops the registry's count of a task that has finished (or could not start).
///
/// # Safety
/// `task` came from [`insert`] and this is its only `release`.
pub(crate) unsafe fn release(task: &TaskRef) {
    // SAFETY: caller contract: this is the count `insert` kept for the registry.
    drop(unsafe { TaskRef::from_raw(TaskRef::as_ptr(task)) });
}

/// Every live (not finished) task of `rt`.
pub(crate) fn snapshot(rt: &Shared) -> Vec<TaskRef> {
    let mut out = Vec::new();
    Task::pool().for_each_live(|t| {
        if std::ptr::eq(t.rt, rt) && t.phase() != DONE {
            out.push(t);
        }
        true
    });
    out
}

/// The live task of `rt` with id `id` (the walk stops there).
pub(crate) fn find(rt: &Shared, id: u64) -> Option<TaskRef> {
    let mut found = None;
    Task::pool().for_each_live(|t| {
        if t.ident.id == id && std::ptr::eq(t.rt, rt) && t.phase() != DONE {
            found = Some(t);
            return false;
        }
        true
    });
    found
}

#[cfg(test)]
mod tests {
    use crate::task::TaskRef;

    /// A finished task still referenced (here, by a kept `JoinHandle`) is never reused by later
    /// spawns (which do reuse cells, see slab.rs), and its result stays.
    #[test]
    fn referenced_finished_tasks_are_not_reused() {
        let rt = crate::runtime::Builder::new().workers(1).build().unwrap();
        rt.run(|| {
            let kept = crate::spawn(|| 42u64);
            while !kept.is_finished() {
                crate::yield_now();
            }
            for round in 0..4 {
                let hs: Vec<_> = (0..1000u64)
                    .map(|i| crate::spawn(move || i + round))
                    .collect();
                for (i, h) in hs.into_iter().enumerate() {
                    let p = TaskRef::as_ptr(&h.task);
                    assert_ne!(p, TaskRef::as_ptr(&kept.task));
                    assert_eq!(h.join().unwrap(), i as u64 + round);
                }
            }
            assert_eq!(kept.join().unwrap(), 42);
        });
    }

    /// Finished tasks are never listed, and the registry's count of a finished task is gone
    /// (only its `JoinHandle` holds it).
    #[test]
    fn finished_tasks_are_released_and_never_listed() {
        let rt = crate::runtime::Builder::new().workers(1).build().unwrap();
        rt.run(|| {
            let h = crate::spawn(|| 5u8);
            while !h.is_finished() {
                crate::yield_now();
            }
            // The finishing worker drops its queue reference and the registry's count right
            // after the result is stored; yield until it has.
            while TaskRef::strong_count(&h.task) != 1 {
                crate::yield_now();
            }
            for _ in 0..5000 {
                crate::spawn(|| {}).join().unwrap();
            }
            assert_eq!(h.join().unwrap(), 5);
        });
        // `main` completes its join before its coroutine returns, so allow it a moment to
        // finish.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !rt.dump().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(rt.dump().is_empty(), "{}", rt.dump());
    }

    /// A coroutine parked forever with nothing else referencing it stays alive and listed.
    #[test]
    fn parked_unreferenced_task_is_listed() {
        let rt = crate::runtime::Builder::new().workers(1).build().unwrap();
        let id = rt.run(|| {
            let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s2 = started.clone();
            let h = crate::spawn(move || {
                s2.store(true, std::sync::atomic::Ordering::SeqCst);
                loop {
                    crate::park::park();
                }
            });
            let id = h.id();
            drop(h);
            // One worker: once the flag is set, the coroutine has run on until it parked.
            while !started.load(std::sync::atomic::Ordering::SeqCst) {
                crate::yield_now();
            }
            id
        });
        let dump = rt.dump();
        assert!(dump.contains(&format!("goroutine {id} [")), "{dump}");
    }
}
