//! The set of live tasks (Go's `allgs`), for the goroutine dump and the watchdog, and the
//! source of task memory for spawns.
//!
//! Sharded by worker, plus one shard for spawns from plain threads. A spawn appends its task to
//! the shard of the spawning worker, so that shard's lock is taken by its own worker (and by a
//! dump or the watchdog, rarely): uncontended. A finishing task does not touch the registry at
//! all (it may finish on another worker, whose lock traffic on the spawner's shard used to cost
//! ~200 ns per spawn with two workers). Instead each shard drops its finished tasks when it has
//! grown to twice the size it had after the last sweep (amortized O(1) per spawn), so finished
//! tasks linger as small headers (their stacks are already freed) until the next sweep.
//! Readers filter out finished tasks.
//!
//! Memory (Go's `gfget`/`gfput`): each shard holds a [`Cache`] of task-pool cells (slab.rs),
//! used under the shard lock the spawn takes anyway. A task's cell goes back to the pool when
//! its last `TaskRef` drops (the sweep's, its `JoinHandle`'s or an `Unparker`'s, on any
//! thread), and the next spawn of any shard reuses it, so steady spawn/join churn makes no
//! system allocation, and a burst of spawns carves its headers from big chunks.
//!
//! The registry's `TaskRef` also keeps a parked task alive while nothing else references it (a
//! coroutine blocked forever leaks, as a goroutine does in Go).
use std::sync::Mutex;

use crate::slab::Cache;
use crate::task::{Task, TaskRef, DONE};

struct Shard {
    tasks: Vec<TaskRef>,
    /// Where this shard's spawns take task memory from.
    cells: Cache<Task>,
    /// Sweep when `tasks.len()` reaches this.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;

pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
}

impl Shard {
    /// Takes finished tasks out of `tasks`; the caller drops them after unlocking (a cell
    /// returns to the pool with its last reference, and dropping a task drops its result,
    /// whose destructor may spawn).
    fn sweep(&mut self) -> Vec<TaskRef> {
        let mut dead = Vec::new();
        let mut i = 0;
        while i < self.tasks.len() {
            if self.tasks[i].phase() == DONE {
                dead.push(self.tasks.swap_remove(i));
            } else {
                i += 1;
            }
        }
        self.sweep_at = (self.tasks.len() * 2).max(MIN_SWEEP);
        dead
    }
}

impl Registry {
    pub(crate) fn new(n: usize) -> Registry {
        Registry {
            shards: (0..n)
                .map(|_| {
                    Mutex::new(Shard {
                        tasks: Vec::new(),
                        cells: Cache::new(),
                        sweep_at: MIN_SWEEP,
                    })
                })
                .collect(),
        }
    }

    /// Registers the task `make` returns in `shard` (the spawning worker's, or the last one
    /// for plain threads) and returns it shared, built in a cell of that shard's cache.
    #[inline]
    pub(crate) fn insert(&self, shard: usize, make: impl FnOnce() -> Task) -> TaskRef {
        let s_idx = shard.min(self.shards.len() - 1);
        let mut guard = self.shards[s_idx].lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let dead = if s.tasks.len() >= s.sweep_at {
            s.sweep()
        } else {
            Vec::new()
        };
        let task = s.cells.alloc_with(make);
        s.tasks.push(task.clone());
        drop(guard);
        drop(dead);
        task
    }

    /// A snapshot of every live (not finished) task.
    pub(crate) fn snapshot(&self) -> Vec<TaskRef> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.tasks.iter().filter(|t| t.phase() != DONE).cloned());
        }
        out
    }

    pub(crate) fn find(&self, id: u64) -> Option<TaskRef> {
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = s
                .tasks
                .iter()
                .find(|t| t.ident.id == id && t.phase() != DONE)
            {
                return Some(t.clone());
            }
        }
        None
    }
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
    #[test]
    fn finished_tasks_are_swept_and_never_listed() {
        let rt = crate::runtime::Builder::new().workers(1).build().unwrap();
        rt.run(|| {
            for _ in 0..5000 {
                crate::spawn(|| {}).join().unwrap();
            }
        });
        // Only live tasks are listed (the shard was swept along the way). `main` completes its
        // join before its coroutine returns, so allow it a moment to finish.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !rt.dump().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(rt.dump().is_empty(), "{}", rt.dump());
    }
}
