//! The set of live tasks (Go's `allgs`), for the goroutine dump and the watchdog.
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
//! Reuse (Go's `gfput`/`gfget`): a sweep moves finished tasks that nothing else references any
//! more (strong count 1: no `JoinHandle`, `Unparker` or queue holds them) to the shard's free
//! list, up to [`FREE_CAP`]; a spawn on that shard, after `Arc::get_mut` confirms it is still
//! unshared, overwrites one in place instead
//! of allocating, so steady spawn/join churn makes no malloc/free. Reuse is safe code: a task
//! on the free list is referenced by the free list alone, so nobody can observe the overwrite.
//!
//! The registry's `Arc` also keeps a parked task alive while nothing else references it (a
//! coroutine blocked forever leaks, as a goroutine does in Go).
use std::sync::{Arc, Mutex};

use crate::task::{Task, DONE};

struct Shard {
    tasks: Vec<Arc<Task>>,
    /// Finished tasks referenced by nothing else, to be overwritten by the next spawns.
    free: Vec<Arc<Task>>,
    /// Sweep when `tasks.len()` reaches this.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;
/// Most finished task headers kept for reuse per shard (about 300 bytes each).
pub(crate) const FREE_CAP: usize = 1024;

pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
}

impl Shard {
    /// Drops finished tasks from `tasks`, keeping unreferenced ones on `free` for reuse.
    fn sweep(&mut self) {
        let mut i = 0;
        while i < self.tasks.len() {
            if self.tasks[i].phase() != DONE {
                i += 1;
                continue;
            }
            let t = self.tasks.swap_remove(i);
            // A plain count load, not `Arc::get_mut` (a locked RMW per task): `insert` re-checks
            // with `get_mut` before it reuses one, so a stale count costs at most an allocation.
            // No `Weak<Task>` is ever made, so a strong count of 1 means only `t` refers to it.
            if self.free.len() < FREE_CAP && Arc::strong_count(&t) == 1 {
                self.free.push(t);
            }
        }
        self.sweep_at = (self.tasks.len() * 2).max(MIN_SWEEP);
    }
}

impl Registry {
    pub(crate) fn new(n: usize) -> Registry {
        Registry {
            shards: (0..n)
                .map(|_| {
                    Mutex::new(Shard {
                        tasks: Vec::new(),
                        free: Vec::new(),
                        sweep_at: MIN_SWEEP,
                    })
                })
                .collect(),
        }
    }

    /// Registers `task` in `shard` (the spawning worker's, or the last one for plain threads)
    /// and returns it shared, in a reused allocation when the shard has one.
    pub(crate) fn insert(&self, shard: usize, task: Task) -> Arc<Task> {
        let s_idx = shard.min(self.shards.len() - 1);
        let mut guard = self.shards[s_idx].lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        if s.tasks.len() >= s.sweep_at {
            s.sweep();
        }
        let task = match s.free.pop() {
            Some(mut a) => match Arc::get_mut(&mut a) {
                Some(t) => {
                    *t = task;
                    a
                }
                // Unreachable (only the free list holds these); allocate to stay correct.
                None => Arc::new(task),
            },
            None => Arc::new(task),
        };
        s.tasks.push(task.clone());
        task
    }

    /// A snapshot of every live (not finished) task.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Task>> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.tasks.iter().filter(|t| t.phase() != DONE).cloned());
        }
        out
    }

    pub(crate) fn find(&self, id: u64) -> Option<Arc<Task>> {
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
    use std::sync::Arc;

    /// Finished tasks nothing else references are reused in place by later spawns; a task
    /// still referenced (here, by a kept `JoinHandle`) is never reused, and its result stays.
    #[test]
    fn unreferenced_finished_tasks_are_reused() {
        let rt = crate::runtime::Builder::new().workers(1).build().unwrap();
        rt.run(|| {
            let kept = crate::spawn(|| 42u64);
            while !kept.is_finished() {
                crate::yield_now();
            }
            let mut seen = std::collections::HashSet::new();
            let mut reused = false;
            for round in 0..4 {
                let hs: Vec<_> = (0..1000u64)
                    .map(|i| crate::spawn(move || i + round))
                    .collect();
                for (i, h) in hs.into_iter().enumerate() {
                    let p = Arc::as_ptr(&h.task) as usize;
                    reused |= !seen.insert(p);
                    assert_ne!(p, Arc::as_ptr(&kept.task) as usize);
                    assert_eq!(h.join().unwrap(), i as u64 + round);
                }
            }
            assert!(reused, "no task allocation was reused");
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
