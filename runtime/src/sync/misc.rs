//! [`WaitGroup`], [`Once`], [`OnceLock`], [`Semaphore`] and [`Barrier`] that park coroutines
//! (Go's `sync.WaitGroup`, `sync.Once`, `sync.OnceValue`, `x/sync/semaphore.Weighted`; Go has
//! no barrier). Each keeps a small state plus waiters behind a brief `std` mutex; waiters are
//! granted in FIFO order (see [`crate::sync`]).
use std::collections::VecDeque;
use std::sync::Arc;

use super::{lock, Mutex, Waiter};

struct WgState {
    count: i64,
    waiters: Vec<Arc<Waiter>>,
}

/// Waits for a collection of coroutines to finish (Go's `sync.WaitGroup`). Clones share the
/// same counter, so a clone can be moved into each coroutine.
#[derive(Clone)]
pub struct WaitGroup {
    st: Arc<std::sync::Mutex<WgState>>,
}

impl Default for WaitGroup {
    fn default() -> Self {
        WaitGroup::new()
    }
}

impl WaitGroup {
    /// A wait group with a zero counter.
    pub fn new() -> WaitGroup {
        WaitGroup {
            st: Arc::new(std::sync::Mutex::new(WgState {
                count: 0,
                waiters: Vec::new(),
            })),
        }
    }

    /// Adds `delta` (may be negative); at zero every waiter is released.
    ///
    /// # Panics
    /// If the counter goes negative (as Go's "negative WaitGroup counter").
    pub fn add(&self, delta: i64) {
        let woken = {
            let mut st = lock(&self.st);
            st.count += delta;
            assert!(st.count >= 0, "sync: negative WaitGroup counter");
            if st.count == 0 {
                std::mem::take(&mut st.waiters)
            } else {
                Vec::new()
            }
        };
        for w in woken {
            w.grant();
        }
    }

    /// `add(-1)`.
    pub fn done(&self) {
        self.add(-1);
    }

    /// Parks until the counter is zero.
    pub fn wait(&self) {
        let w = {
            let mut st = lock(&self.st);
            if st.count == 0 {
                return;
            }
            let w = Waiter::new();
            st.waiters.push(w.clone());
            w
        };
        w.wait();
    }
}

impl std::fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WaitGroup {{ count: {} }}", lock(&self.st).count)
    }
}

/// Runs a function once (Go's `sync.Once`). A panicking function still counts as done, as in
/// Go; concurrent callers wait for the first to finish.
#[derive(Default)]
pub struct Once {
    st: std::sync::Mutex<OnceState>,
}

#[derive(Default)]
struct OnceState {
    done: bool,
    running: bool,
    waiters: Vec<Arc<Waiter>>,
}

struct OnceFinish<'a>(&'a Once);

impl Drop for OnceFinish<'_> {
    fn drop(&mut self) {
        let woken = {
            let mut st = lock(&self.0.st);
            st.done = true;
            st.running = false;
            std::mem::take(&mut st.waiters)
        };
        for w in woken {
            w.grant();
        }
    }
}

impl Once {
    /// A new `Once`.
    pub fn new() -> Once {
        Once::default()
    }

    /// Runs `f` if no call has run yet; returns after the first call has finished.
    pub fn call_once(&self, f: impl FnOnce()) {
        loop {
            let w = {
                let mut st = lock(&self.st);
                if st.done {
                    return;
                }
                if !st.running {
                    st.running = true;
                    drop(st);
                    let _finish = OnceFinish(self);
                    f();
                    return;
                }
                let w = Waiter::new();
                st.waiters.push(w.clone());
                w
            };
            w.wait();
        }
    }

    /// True once a call has finished.
    pub fn is_completed(&self) -> bool {
        lock(&self.st).done
    }
}

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Once { .. }")
    }
}

/// A cell written once (like `std::sync::OnceLock`, Go's `sync.OnceValue`), whose concurrent
/// initializers park instead of blocking the worker. If the initializer panics the cell stays
/// empty and the next caller retries.
pub struct OnceLock<T> {
    cell: std::sync::OnceLock<T>,
    init: Mutex<()>,
}

impl<T> Default for OnceLock<T> {
    fn default() -> Self {
        OnceLock::new()
    }
}

impl<T> OnceLock<T> {
    /// An empty cell.
    pub const fn new() -> OnceLock<T> {
        OnceLock {
            cell: std::sync::OnceLock::new(),
            init: Mutex::new_const(()),
        }
    }

    /// The value, if set.
    pub fn get(&self) -> Option<&T> {
        self.cell.get()
    }

    /// Sets the value if empty; gives it back otherwise.
    pub fn set(&self, v: T) -> Result<(), T> {
        let _g = self.init.lock();
        self.cell.set(v)
    }

    /// The value, running `f` to set it if empty (one initializer at a time).
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        if let Some(v) = self.cell.get() {
            return v;
        }
        let _g = self.init.lock();
        if self.cell.get().is_none() {
            let _ = self.cell.set(f());
        }
        self.cell.get().expect("set above")
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for OnceLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OnceLock").field(&self.cell.get()).finish()
    }
}

struct SemState {
    permits: u64,
    q: VecDeque<(Arc<Waiter>, u64)>,
}

/// A weighted counting semaphore (Go's `x/sync/semaphore.Weighted`): FIFO, so a large
/// request at the head is not overtaken by smaller ones.
pub struct Semaphore {
    st: std::sync::Mutex<SemState>,
}

impl Semaphore {
    /// A semaphore with `permits` available.
    pub fn new(permits: u64) -> Semaphore {
        Semaphore {
            st: std::sync::Mutex::new(SemState {
                permits,
                q: VecDeque::new(),
            }),
        }
    }

    /// Parks until `n` permits are available and takes them.
    pub fn acquire(&self, n: u64) {
        let w = {
            let mut st = lock(&self.st);
            if st.q.is_empty() && st.permits >= n {
                st.permits -= n;
                return;
            }
            let w = Waiter::new();
            st.q.push_back((w.clone(), n));
            w
        };
        w.wait();
    }

    /// Takes `n` permits if available now (and nobody is queued).
    pub fn try_acquire(&self, n: u64) -> bool {
        let mut st = lock(&self.st);
        if st.q.is_empty() && st.permits >= n {
            st.permits -= n;
            return true;
        }
        false
    }

    /// Returns `n` permits, granting queued requests in order.
    pub fn release(&self, n: u64) {
        let mut st = lock(&self.st);
        st.permits += n;
        while let Some(&(_, need)) = st.q.front() {
            if need > st.permits {
                break;
            }
            st.permits -= need;
            if let Some((w, _)) = st.q.pop_front() {
                w.grant();
            }
        }
    }

    /// Permits available now.
    pub fn available(&self) -> u64 {
        lock(&self.st).permits
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Semaphore {{ available: {} }}", self.available())
    }
}

/// Lets `n` parties wait for each other; reusable (like `std::sync::Barrier`).
pub struct Barrier {
    n: usize,
    st: std::sync::Mutex<(usize, Vec<Arc<Waiter>>)>,
}

/// Result of [`Barrier::wait`]: exactly one party per generation is the leader.
#[derive(Debug, Clone, Copy)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for the party that completed the generation.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` parties.
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n,
            st: std::sync::Mutex::new((0, Vec::new())),
        }
    }

    /// Parks until `n` parties have called `wait`.
    pub fn wait(&self) -> BarrierWaitResult {
        let w = {
            let mut st = lock(&self.st);
            st.0 += 1;
            if st.0 >= self.n {
                st.0 = 0;
                let woken = std::mem::take(&mut st.1);
                drop(st);
                for w in woken {
                    w.grant();
                }
                return BarrierWaitResult(true);
            }
            let w = Waiter::new();
            st.1.push(w.clone());
            w
        };
        w.wait();
        BarrierWaitResult(false)
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Barrier {{ n: {} }}", self.n)
    }
}
