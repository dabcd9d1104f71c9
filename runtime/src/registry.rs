//! The set of live tasks (Go's `allgs`), for the goroutine dump and the watchdog.
//!
//! Sharded by worker (plus one shard for plain threads) so that spawn and exit on different
//! workers do not contend. A task holds its slot (`shard << 32 | index`) in `Task::reg_slot`.
//! The registry's `Arc` also keeps a parked task alive while nothing else references it
//! (a coroutine blocked forever leaks, as a goroutine does in Go).
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::task::Task;

#[derive(Default)]
struct Shard {
    slots: Vec<Option<Arc<Task>>>,
    free: Vec<u32>,
}

pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
}

impl Registry {
    pub(crate) fn new(n: usize) -> Registry {
        Registry {
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    pub(crate) fn insert(&self, shard: usize, task: &Arc<Task>) {
        let s_idx = shard.min(self.shards.len() - 1);
        let mut s = self.shards[s_idx].lock().unwrap_or_else(|e| e.into_inner());
        let i = match s.free.pop() {
            Some(i) => {
                s.slots[i as usize] = Some(task.clone());
                i
            }
            None => {
                s.slots.push(Some(task.clone()));
                (s.slots.len() - 1) as u32
            }
        };
        task.reg_slot
            .store((s_idx << 32) | i as usize, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, task: &Task) {
        let v = task.reg_slot.swap(usize::MAX, Ordering::Relaxed);
        if v == usize::MAX {
            return;
        }
        let (s_idx, i) = (v >> 32, (v & 0xffff_ffff) as u32);
        let old = {
            let mut s = self.shards[s_idx].lock().unwrap_or_else(|e| e.into_inner());
            let old = s.slots[i as usize].take();
            s.free.push(i);
            old
        };
        drop(old);
    }

    /// A snapshot of every live task.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Task>> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.slots.iter().flatten().cloned());
        }
        out
    }

    pub(crate) fn find(&self, id: u64) -> Option<Arc<Task>> {
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = s.slots.iter().flatten().find(|t| t.ident.id == id) {
                return Some(t.clone());
            }
        }
        None
    }
}
