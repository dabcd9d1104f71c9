//! Unit tests of the stack pool, its guards and the region registry.
use super::*;
use corosensei::stack::Stack;
use proptest::prelude::*;

fn guard_of(s: &SlabStack) -> usize {
    s.limit().get()
}

/// Three worker caches of `pool`.
fn caches(pool: &StackPool) -> [StackCache<'_>; 3] {
    std::array::from_fn(|_| StackCache::new(pool))
}

/// Worker `i`'s cache, or `None` (a plain thread) for `usize::MAX`.
fn wk<'a>(w: &'a [StackCache<'a>; 3], i: usize) -> Option<&'a StackCache<'a>> {
    w.get(i)
}

/// Pool with `mode`, or `None` (test skipped) if the kernel lacks MADV_GUARD_INSTALL.
fn pool_in(mode: GuardMode) -> Option<StackPool> {
    let pool = StackPool::with_guard_mode(mode);
    match pool.alloc(MIN_STACK, None) {
        Ok(s) => {
            pool.free(s, None);
            Some(pool)
        }
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Lines of /proc/self/maps overlapping the pool's regions.
fn maps_in(pool: &StackPool) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let ranges = pool.region_ranges();
    maps.lines()
        .filter(|l| {
            let r = l.split(' ').next().unwrap();
            let (a, b) = r.split_once('-').unwrap();
            let a = usize::from_str_radix(a, 16).unwrap();
            let b = usize::from_str_radix(b, 16).unwrap();
            ranges.iter().any(|&(base, len)| a < base + len && base < b)
        })
        .count()
}

#[test]
fn alloc_free_reuse() {
    let pool = StackPool::new();
    let w = caches(&pool);
    let a = pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap();
    let base = guard_of(&a);
    pool.free(a, wk(&w, 0));
    let b = pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap();
    assert_eq!(guard_of(&b), base, "worker cache reuses the slot");
    // Worker 1 cannot see worker 0's cache: it carves a new slot.
    let c = pool.alloc(DEFAULT_STACK, wk(&w, 1)).unwrap();
    assert_ne!(guard_of(&c), base);
    // A non-worker free goes to the global list, visible to every worker.
    let cb = guard_of(&c);
    pool.free(c, wk(&w, usize::MAX));
    let d = pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap();
    assert_eq!(guard_of(&d), cb);
    let st = pool.stats();
    assert_eq!((st.slots_mapped, st.in_use, st.free_cached), (2, 2, 0));
    assert!(st.guard_mode.is_some());
    pool.free(b, wk(&w, 0));
    pool.free(d, wk(&w, 1));
    assert_eq!(pool.stats().free_cached, 2);
}

#[test]
fn sizes_round_up_and_classes_are_separate() {
    let page = page_size();
    let pool = StackPool::new();
    let w = caches(&pool);
    let a = pool.alloc(1, wk(&w, 0)).unwrap();
    let b = pool.alloc(MIN_STACK + 1, wk(&w, 0)).unwrap();
    let c = pool.alloc(DEFAULT_STACK, wk(&w, usize::MAX)).unwrap();
    assert_eq!(a.usable_size(), MIN_STACK);
    assert_eq!(b.usable_size(), MIN_STACK + page);
    assert_eq!(c.usable_size(), DEFAULT_STACK);
    assert_eq!(pool.stats().regions, 3);
    for s in [&a, &b, &c] {
        assert_eq!(
            s.base().get() - s.limit().get(),
            s.usable_size() + page - EXT_BYTES
        );
        assert_eq!(s.ext_addr(), s.base().get());
        assert_eq!(s.base().get() % corosensei::stack::STACK_ALIGNMENT, 0);
    }
    let err = pool.alloc(usize::MAX / 2, wk(&w, 0)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    for s in [a, b, c] {
        pool.free(s, wk(&w, 0));
    }
}

#[test]
fn whole_usable_range_is_writable() {
    let page = page_size();
    let pool = StackPool::new();
    let w = caches(&pool);
    for size in [MIN_STACK, DEFAULT_STACK, 256 * 1024] {
        let s = pool.alloc(size, wk(&w, 0)).unwrap();
        let lo = (s.limit().get() + page) as *mut u8;
        // SAFETY: `lo..base` is the stack's usable range, mapped read-write and
        // owned by this test while the stack is out.
        unsafe {
            std::ptr::write_bytes(lo, 0xAB, s.usable_size());
            assert_eq!(*lo, 0xAB);
            assert_eq!(*((s.base().get() - 1) as *const u8), 0xAB);
        }
        pool.free(s, wk(&w, 0));
    }
}

#[test]
fn find_guard_covers_exactly_the_guard_page() {
    let page = page_size();
    let pool = StackPool::new();
    let w = caches(&pool);
    let s = pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap();
    let g = guard_of(&s);
    let hit = GuardHit {
        slot_base: g,
        usable_size: DEFAULT_STACK,
    };
    assert_eq!(find_guard(g), Some(hit));
    assert_eq!(find_guard(g + page - 1), Some(hit));
    assert_eq!(find_guard(g + page), None);
    assert_eq!(find_guard(s.base().get() - 1), None);
    assert_eq!(find_guard(8), None);
    pool.free(s, wk(&w, 0));
}

/// In the child: touch the guard page of a fresh stack of the given mode.
fn touch_guard(mode: GuardMode) {
    let pool = StackPool::with_guard_mode(mode);
    let w = caches(&pool);
    let s = pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap();
    // SAFETY: not safe to complete: this read is meant to fault (child process).
    unsafe { std::ptr::read_volatile(guard_of(&s) as *const u8) };
    std::process::exit(0); // reached only if the guard is missing
}

#[test]
fn guard_faults_with_guard_install() {
    let name = "stack::tests::guard_faults_with_guard_install";
    if test_child::is_child(name) {
        touch_guard(GuardMode::GuardInstall);
    }
    if pool_in(GuardMode::GuardInstall).is_none() {
        return;
    }
    let out = test_child::run(name);
    assert_eq!(test_child::signal(&out), Some(libc::SIGSEGV), "{out:?}");
}

#[test]
fn guard_faults_with_mprotect() {
    let name = "stack::tests::guard_faults_with_mprotect";
    if test_child::is_child(name) {
        touch_guard(GuardMode::Mprotect);
    }
    let out = test_child::run(name);
    assert_eq!(test_child::signal(&out), Some(libc::SIGSEGV), "{out:?}");
}

#[test]
fn pages_go_back_past_high_water() {
    let page = page_size();
    let pool = StackPool::new();
    let w = caches(&pool);
    // A worker's cache keeps HIGH_WATER stacks of a class plus its hot one.
    let cached = HIGH_WATER + 1;
    let stacks: Vec<SlabStack> = (0..=cached)
        .map(|_| pool.alloc(MIN_STACK, wk(&w, 0)).unwrap())
        .collect();
    let resident = |s: &SlabStack| {
        let mut vec = vec![0u8; s.usable_size() / page];
        // SAFETY: the range is page-aligned and mapped; `vec` has one byte per page.
        let r = unsafe {
            libc::mincore(
                (s.limit().get() + page) as *mut libc::c_void,
                s.usable_size(),
                vec.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        vec.iter().filter(|&&b| b & 1 != 0).count()
    };
    for s in &stacks {
        // SAFETY: the usable range of a stack this test owns.
        unsafe { std::ptr::write_bytes((s.limit().get() + page) as *mut u8, 1, s.usable_size()) };
    }
    let last = guard_of(stacks.last().unwrap());
    let last_resident = resident(stacks.last().unwrap());
    assert_eq!(last_resident, MIN_STACK / page);
    for s in stacks {
        pool.free(s, wk(&w, 0));
    }
    // The first `cached` stay cached on worker 0; the last went to the dirty list, still
    // resident until a trim gives its pages back.
    // A trim releases only what stayed unused since the previous trim: the first call
    // sets the low-water mark, the second releases the idle stack.
    assert_eq!(pool.trim_to(GLOBAL_KEEP), 0);
    assert_eq!(pool.trim_to(0), 1);
    assert_eq!(pool.trim_to(0), 0);
    let again: Vec<SlabStack> = (0..=cached)
        .map(|_| pool.alloc(MIN_STACK, wk(&w, 0)).unwrap())
        .collect();
    let s = again
        .iter()
        .find(|s| guard_of(s) == last)
        .expect("slot reused");
    assert_eq!(resident(s), 0, "MADV_DONTNEED released the pages");
    assert_eq!(pool.stats().slots_mapped, cached + 1);
    for s in again {
        pool.free(s, wk(&w, 0));
    }
}

#[test]
fn guard_install_adds_no_maps() {
    let Some(pool) = pool_in(GuardMode::GuardInstall) else {
        return;
    };
    let w = caches(&pool);
    let stacks: Vec<SlabStack> = (0..1000)
        .map(|_| pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap())
        .collect();
    let st = pool.stats();
    assert_eq!(st.guard_mode, Some(GuardMode::GuardInstall));
    assert!(
        maps_in(&pool) <= st.regions,
        "{} maps for {} regions",
        maps_in(&pool),
        st.regions
    );
    for s in stacks {
        pool.free(s, wk(&w, 0));
    }
    // Past the ~32.7k stacks at which mprotect guards would exhaust 65530 maps.
    let many: Vec<SlabStack> = (0..40_000)
        .map(|_| pool.alloc(MIN_STACK, wk(&w, 0)).unwrap())
        .collect();
    assert!(maps_in(&pool) <= pool.stats().regions);
    for s in many {
        pool.free(s, wk(&w, usize::MAX));
    }
}

#[test]
fn pool_is_send_sync_and_stack_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<StackPool>();
    send::<SlabStack>();
}

#[test]
fn mprotect_guards_cost_maps_and_respect_budget() {
    let pool = StackPool::with_guard_mode(GuardMode::Mprotect);
    let w = caches(&pool);
    let stacks: Vec<SlabStack> = (0..100)
        .map(|_| pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap())
        .collect();
    assert_eq!(pool.stats().guard_mode, Some(GuardMode::Mprotect));
    assert!(
        maps_in(&pool) >= 199,
        "each mprotect guard splits the region"
    );
    pool.set_guard_budget(2);
    let more = [
        pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap(),
        pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap(),
    ];
    let err = pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
    let msg = err.to_string();
    assert!(
        msg.contains("vm.max_map_count") && msg.contains("sysctl -w"),
        "{msg}"
    );
    // Reuse needs no new guard, so it works past the budget.
    for s in more {
        pool.free(s, wk(&w, 0));
    }
    let s = pool.alloc(DEFAULT_STACK, wk(&w, 0)).unwrap();
    pool.free(s, wk(&w, 0));
    for s in stacks {
        pool.free(s, wk(&w, 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Live stacks never overlap, each guard is found, and counters add up.
    #[test]
    fn random_alloc_free(ops in proptest::collection::vec((0usize..3, 0usize..4, any::<bool>()), 1..200)) {
        let sizes = [MIN_STACK, DEFAULT_STACK, 100 * 1024];
        let pool = StackPool::new();
        let w = caches(&pool);
        let mut live: Vec<SlabStack> = Vec::new();
        for (size, worker, free) in ops {
            let worker = if worker == 3 { usize::MAX } else { worker };
            if free && !live.is_empty() {
                let s = live.swap_remove(size % live.len());
                pool.free(s, wk(&w, worker));
            } else {
                let s = pool.alloc(sizes[size], wk(&w, worker)).unwrap();
                prop_assert!(s.usable_size() >= sizes[size]);
                prop_assert!(find_guard(guard_of(&s)).is_some());
                for o in &live {
                    prop_assert!(s.base() <= o.limit() || o.base() <= s.limit());
                }
                live.push(s);
            }
        }
        let st = pool.stats();
        prop_assert_eq!(st.in_use, live.len());
        prop_assert_eq!(st.in_use + st.free_cached, st.slots_mapped);
        for s in live {
            pool.free(s, wk(&w, 0));
        }
    }
}

#[test]
fn dropped_cache_gives_its_stacks_back() {
    let pool = StackPool::new();
    let (a, b) = {
        let w = caches(&pool);
        let s: Vec<SlabStack> = (0..3)
            .map(|_| pool.alloc(MIN_STACK, wk(&w, 0)).unwrap())
            .collect();
        let bases: Vec<usize> = s.iter().map(guard_of).collect();
        for s in s {
            pool.free(s, wk(&w, 0));
        }
        let st = pool.stats();
        assert_eq!((st.in_use, st.free_cached), (0, 3));
        (bases, pool.stats().slots_mapped)
    };
    // The cache is gone: its stacks are on the global list, for any caller, none lost.
    let st = pool.stats();
    assert_eq!((st.in_use, st.free_cached, st.slots_mapped), (0, 3, b));
    let again: Vec<SlabStack> = (0..3)
        .map(|_| pool.alloc(MIN_STACK, None).unwrap())
        .collect();
    for s in &again {
        assert!(a.contains(&guard_of(s)));
    }
    for s in again {
        pool.free(s, None);
    }
    assert_eq!(pool.stats().slots_mapped, 3);
}
