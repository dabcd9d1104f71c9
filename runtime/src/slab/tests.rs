use super::*;
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// Declares a test value type with its own pool and a count of live values.
macro_rules! pooled {
    ($name:ident, $pool:ident, $live:ident, $payload:ty, $init:expr) => {
        static $pool: Pool<$name> = Pool::new();
        static $live: AtomicUsize = AtomicUsize::new(0);
        struct $name {
            v: u64,
            _pad: $payload,
        }
        impl $name {
            fn new(v: u64) -> $name {
                $live.fetch_add(1, Ordering::SeqCst);
                $name { v, _pad: $init }
            }
        }
        impl Drop for $name {
            fn drop(&mut self) {
                $live.fetch_sub(1, Ordering::SeqCst);
            }
        }
        impl Pooled for $name {
            fn pool() -> &'static Pool<$name> {
                &$pool
            }
        }
    };
}

pooled!(ModelItem, MODEL_POOL, MODEL_LIVE, [u64; 3], [0; 3]);
pooled!(ThreadItem, THREAD_POOL, THREAD_LIVE, (), ());
pooled!(BigItem, BIG_POOL, BIG_LIVE, [u64; 500], [0; 500]);
pooled!(WalkItem, WALK_POOL, WALK_LIVE, (), ());
pooled!(
    PrefaultItem,
    PREFAULT_POOL,
    PREFAULT_LIVE,
    [u64; 511],
    [0; 511]
);
pooled!(DropItem, DROP_POOL, DROP_LIVE, (), ());

#[derive(Debug, Clone)]
enum Op {
    Alloc,
    Clone(usize),
    Drop(usize),
    GetMut(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Alloc),
        2 => (0..64usize).prop_map(Op::Clone),
        3 => (0..64usize).prop_map(Op::Drop),
        1 => (0..64usize).prop_map(Op::GetMut),
    ]
}

proptest! {
    /// Against a model where each value has a count: values read back, counts and `get_mut`
    /// agree, live values never share a cell, and every value is dropped exactly once.
    #[test]
    fn matches_model(ops in proptest::collection::vec(op(), 1..400)) {
        let mut cache = Cache::<ModelItem>::new();
        // (handle, value id); the model count of a value is its number of handles.
        let mut refs: Vec<(Ref<ModelItem>, u64)> = Vec::new();
        let mut next = 0u64;
        let live_before = MODEL_LIVE.load(Ordering::SeqCst);
        for o in ops {
            match o {
                Op::Alloc => {
                    next += 1;
                    let r = cache.alloc(ModelItem::new(next));
                    refs.push((r, next));
                }
                Op::Clone(i) if !refs.is_empty() => {
                    let (r, v) = &refs[i % refs.len()];
                    let c = (r.clone(), *v);
                    refs.push(c);
                }
                Op::Drop(i) if !refs.is_empty() => {
                    let k = i % refs.len();
                    refs.swap_remove(k);
                }
                Op::GetMut(i) if !refs.is_empty() => {
                    let k = i % refs.len();
                    let v = refs[k].1;
                    let count = refs.iter().filter(|(_, w)| *w == v).count();
                    let got = Ref::get_mut(&mut refs[k].0).map(|m| m.v);
                    prop_assert_eq!(got, (count == 1).then_some(v));
                }
                _ => {}
            }
            let mut cells = std::collections::HashMap::new();
            for (r, v) in &refs {
                prop_assert_eq!(r.v, *v);
                let count = refs.iter().filter(|(_, w)| w == v).count();
                prop_assert_eq!(Ref::strong_count(r), count);
                // One cell per value id, one value id per cell.
                let p = Ref::as_ptr(r) as usize;
                prop_assert_eq!(*cells.entry(p).or_insert(*v), *v);
            }
            let distinct: HashSet<u64> = refs.iter().map(|(_, v)| *v).collect();
            prop_assert_eq!(
                MODEL_LIVE.load(Ordering::SeqCst) - live_before,
                distinct.len()
            );
        }
        refs.clear();
        prop_assert_eq!(MODEL_LIVE.load(Ordering::SeqCst), live_before);
    }
}

/// Freed cells are handed out again, and raw round trips keep the count.
#[test]
fn freed_cells_are_reused_and_raw_round_trips() {
    let mut cache = Cache::<DropItem>::new();
    let first: Vec<_> = (0..200).map(|i| cache.alloc(DropItem::new(i))).collect();
    let addrs: HashSet<usize> = first.iter().map(|r| Ref::as_ptr(r) as usize).collect();
    assert_eq!(addrs.len(), 200);
    let raw = Ref::into_raw(first[7].clone());
    // SAFETY: `first[7]` stays alive during the call.
    let again = unsafe { Ref::clone_raw(raw) };
    assert_eq!(Ref::strong_count(&first[7]), 3);
    // SAFETY: `raw` came from `into_raw` and is taken back once.
    let back = unsafe { Ref::from_raw(raw) };
    assert!(Ref::ptr_eq(&back, &again) && back.v == 7);
    drop((back, again));
    assert_eq!(Ref::strong_count(&first[7]), 1);
    drop(first);
    assert_eq!(DROP_LIVE.load(Ordering::SeqCst), 0);
    // Our cache's free list is empty, so it takes the 200 freed cells before carving.
    let second: Vec<_> = (0..200).map(|i| cache.alloc(DropItem::new(i))).collect();
    let reused = second
        .iter()
        .filter(|r| addrs.contains(&(Ref::as_ptr(r) as usize)))
        .count();
    assert_eq!(reused, 200);
    drop(second);
    // A dropped cache gives its cells back too (its unused fresh ones included): 256 cells
    // were carved in all, and another cache gets all of them without carving.
    drop(cache);
    let carved = DROP_POOL.chunk.lock().unwrap().next;
    let mut other = Cache::<DropItem>::new();
    let third: Vec<_> = (0..256).map(|i| other.alloc(DropItem::new(i))).collect();
    assert_eq!(DROP_POOL.chunk.lock().unwrap().next, carved);
    assert_eq!(other.left, 0);
    drop(third);
}

/// Many chunks: every cell is distinct and writable.
#[test]
fn grows_through_many_chunks() {
    let mut cache = Cache::<BigItem>::new();
    let all: Vec<_> = (0..3000).map(|i| cache.alloc(BigItem::new(i))).collect();
    let addrs: HashSet<usize> = all.iter().map(|r| Ref::as_ptr(r) as usize).collect();
    assert_eq!(addrs.len(), all.len());
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.v, i as u64);
        assert_eq!(Ref::as_ptr(r) as usize % std::mem::align_of::<BigItem>(), 0);
    }
    drop(all);
    assert_eq!(BIG_LIVE.load(Ordering::SeqCst), 0);
}

/// Last references dropped on several threads while one thread allocates: every value is
/// dropped exactly once.
#[test]
fn concurrent_drops() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Ref<ThreadItem>>>();
    let rx = Arc::new(Mutex::new(rx));
    let droppers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || loop {
                let batch = rx.lock().unwrap().recv();
                match batch {
                    Ok(b) => drop(b),
                    Err(_) => return,
                }
            })
        })
        .collect();
    let mut cache = Cache::<ThreadItem>::new();
    for round in 0..200u64 {
        let batch: Vec<_> = (0..100)
            .map(|i| cache.alloc(ThreadItem::new(round * 100 + i)))
            .collect();
        for (i, r) in batch.iter().enumerate() {
            assert_eq!(r.v, round * 100 + i as u64);
        }
        // Keep a clone of some, dropped here after the dropper thread drops its copy.
        let keep: Vec<_> = batch.iter().step_by(7).cloned().collect();
        tx.send(batch).unwrap();
        drop(keep);
    }
    drop(tx);
    for d in droppers {
        d.join().unwrap();
    }
    assert_eq!(THREAD_LIVE.load(Ordering::SeqCst), 0);
}

/// A million live tasks take a million cells, so every 8 bytes of the header cost ~2000 page
/// faults in a burst: keep it from growing unnoticed. (184 on the spawnall branch, 192 with
/// the netpoller's stack-prefetch hint, 112 after spawn3, 96 now: see task.rs.)
#[cfg(target_pointer_width = "64")]
#[test]
fn task_cell_size() {
    let size = std::mem::size_of::<Cell<crate::task::Task>>();
    assert!(size <= 96, "task cell grew to {size} bytes");
}

/// `for_each_live` visits exactly the live values (each once, holding a count meanwhile), not
/// freed cells, and stops when asked.
#[test]
fn for_each_live_visits_live_values() {
    let mut cache = Cache::<WalkItem>::new();
    let mut all: Vec<_> = (0..500)
        .map(|i| Some(cache.alloc(WalkItem::new(i))))
        .collect();
    for (i, r) in all.iter_mut().enumerate() {
        if i % 3 == 0 {
            *r = None;
        }
    }
    // Reuse some freed cells for new values.
    let extra: Vec<_> = (1000..1050)
        .map(|i| cache.alloc(WalkItem::new(i)))
        .collect();
    let mut expect: Vec<u64> = all.iter().flatten().map(|r| r.v).collect();
    expect.extend(extra.iter().map(|r| r.v));
    expect.sort_unstable();
    let mut seen = Vec::new();
    WALK_POOL.for_each_live(|r| {
        assert!(Ref::strong_count(&r) >= 2, "the walk holds a count");
        seen.push(r.v);
        true
    });
    seen.sort_unstable();
    assert_eq!(seen, expect);
    let mut n = 0;
    WALK_POOL.for_each_live(|_| {
        n += 1;
        n < 10
    });
    assert_eq!(n, 10);
    drop((all, extra));
    WALK_POOL.for_each_live(|r| panic!("value {} still live", r.v));
    assert_eq!(WALK_LIVE.load(Ordering::SeqCst), 0);
}

/// Out of a burst (small chunks) `prefault_ahead` does nothing; in one it claims pages past
/// the carving, within the current chunk, and leaves every cell usable.
#[test]
fn prefault_ahead_only_in_a_burst() {
    let mut cache = Cache::<PrefaultItem>::new();
    let first = cache.alloc(PrefaultItem::new(0));
    let before = PREFAULT_POOL.chunk.lock().unwrap().populated;
    PREFAULT_POOL.prefault_ahead();
    assert_eq!(PREFAULT_POOL.chunk.lock().unwrap().populated, before);
    // 4 KiB values: chunks of 64 KiB doubling reach BURST_CHUNK after ~500 values.
    let all: Vec<_> = (1..2000)
        .map(|i| cache.alloc(PrefaultItem::new(i)))
        .collect();
    PREFAULT_POOL.prefault_ahead();
    {
        let c = PREFAULT_POOL.chunk.lock().unwrap();
        assert!(c.populated > c.next && c.populated <= c.end);
    }
    let more: Vec<_> = (2000..3000)
        .map(|i| cache.alloc(PrefaultItem::new(i)))
        .collect();
    for (i, r) in std::iter::once(&first).chain(&all).chain(&more).enumerate() {
        assert_eq!(r.v, i as u64);
    }
}
