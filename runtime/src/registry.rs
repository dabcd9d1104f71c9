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
//! The registry's `Arc` also keeps a parked task alive while nothing else references it (a
//! coroutine blocked forever leaks, as a goroutine does in Go).
use std::sync::{Arc, Mutex};

use crate::task::{Task, DONE};

struct Shard {
    tasks: Vec<Arc<Task>>,
    /// Sweep when `tasks.len()` reaches this.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;

pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
}

impl Registry {
    pub(crate) fn new(n: usize) -> Registry {
        Registry {
            shards: (0..n)
                .map(|_| {
                    Mutex::new(Shard {
                        tasks: Vec::new(),
                        sweep_at: MIN_SWEEP,
                    })
                })
                .collect(),
        }
    }

    /// Registers `task` in `shard` (the spawning worker's, or the last one for plain threads)
    /// and returns it shared.
    pub(crate) fn insert(&self, shard: usize, task: Task) -> Arc<Task> {
        let task = Arc::new(task);
        let s_idx = shard.min(self.shards.len() - 1);
        let mut s = self.shards[s_idx].lock().unwrap_or_else(|e| e.into_inner());
        if s.tasks.len() >= s.sweep_at {
            s.tasks.retain(|t| t.phase() != DONE);
            s.sweep_at = (s.tasks.len() * 2).max(MIN_SWEEP);
        }
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
