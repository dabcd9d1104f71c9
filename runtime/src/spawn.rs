//! Spawning coroutines: `go!`, [`spawn`], [`Builder`], [`run`], [`yield_now`], [`current`],
//! [`spawn_blocking`], [`spawn_blocking_deadline`] (Go's `newproc`, `Gosched`, and the `go` statement).
//!
//! A spawn puts the closure (later its result) inline in the task (`slot.rs`), which it builds
//! in a cell of the task pool taken from the calling worker's own cache (registry.rs, slab.rs:
//! no lock, and no system allocation once cells are reused). It pushes the task on the calling
//! worker's ring (or the injector from a plain thread). The stack is taken when the coroutine first runs, from
//! that worker's cache: queued never-run tasks hold no stack, and stealing moves only the
//! closure. If a stack cannot be had then (the mprotect guard budget of an old kernel is spent),
//! that task fails (its join returns the error) and later spawns allocate eagerly, so the
//! spawn itself returns the error naming `vm.max_map_count`. The body catches panics at the coroutine boundary and hands the result to
//! the `JoinHandle`.
use std::io;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::join::{JoinHandle, Packet};
use crate::overflow::CoroIdent;
use crate::registry;
use crate::sched::worker::{self, WorkerCtx};
use crate::sched::{self, Shared};
use crate::slot::Slot;
use crate::task::{Task, WaitReason};

/// Configures a coroutine before spawning it (name, stack size), like `std::thread::Builder`.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with the runtime's defaults.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the coroutine (shown in panics, overflow reports, the watchdog and dumps).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Usable stack size in bytes (rounded up to pages; at least 16 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns on the current runtime (the caller's, or the default one, started lazily).
    /// Fails if no stack can be allocated (the error names the limit that was hit).
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let site = Location::caller();
        let (rt, worker) = sched::current_or_default_ctx();
        spawn_on(rt, worker, self, site, 0, f)
    }

    /// Like [`Builder::spawn`], and `f` gets a zeroed buffer of `len` bytes that lives at the
    /// top of the coroutine's own stack slot, above its frames (the stack size asked for
    /// stays free for frames). See [`spawn_with_buffer`] for why.
    ///
    /// Fails with `InvalidInput` if `len` is over [`MAX_BUFFER`] (use a `Vec` for that).
    #[track_caller]
    pub fn spawn_with_buffer<F, T>(self, len: usize, f: F) -> io::Result<JoinHandle<T>>
    where
        F: for<'a> FnOnce(&'a mut [u8]) -> T + Send + 'static,
        T: Send + 'static,
    {
        let site = Location::caller();
        if len > MAX_BUFFER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("spawn_with_buffer: a buffer of {len} bytes is over the {MAX_BUFFER} byte limit"),
            ));
        }
        let lines = u16::try_from(len.div_ceil(64)).expect("checked against MAX_SCRATCH");
        let (rt, worker) = sched::current_or_default_ctx();
        spawn_on(rt, worker, self, site, lines, move || {
            let t = match worker::current_task() {
                Some(t) => t,
                None => crate::overflow::throw("spawn_with_buffer: no current task"),
            };
            // SAFETY: this closure is the body of the task spawned just below with `lines`
            // lines of scratch, so `t` is that task and this is its coroutine, asking once,
            // before anything could park it; the slice lives in `f`'s call, which ends before
            // the coroutine's body does.
            f(unsafe { t.scratch(len) })
        })
    }
}

/// Spawns on `rt` (from whichever thread).
pub(crate) fn spawn_in<F, T>(
    rt: &'static Shared,
    b: Builder,
    site: &'static Location<'static>,
    f: F,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_on(rt, worker::ctx_of(rt), b, site, 0, f)
}

/// Spawns on `rt`; `worker` is the calling thread's context when it is one of `rt`'s workers
/// (looked up once by the caller: the spawn path reads no other thread-local).
#[inline]
fn spawn_on<F, T>(
    rt: &'static Shared,
    worker: Option<&'static WorkerCtx>,
    b: Builder,
    site: &'static Location<'static>,
    scratch_lines: u16,
    f: F,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let size = b
        .stack_size
        .unwrap_or(rt.cfg.stack_size)
        .max(crate::stack::MIN_STACK);
    // Stacks are normally taken when the coroutine first runs (so that a million queued
    // spawns hold closures, not stacks). Once the pool has failed for lack of guard budget,
    // allocate eagerly so that the spawn itself reports the error.
    let stack = if rt.stacks.exhausted() {
        let reserve = crate::stack::scratch_reserve(scratch_lines);
        Some(rt.stacks.alloc(size.saturating_add(reserve), None)?)
    } else {
        None
    };
    let id = match worker {
        Some(c) => c.next_id(),
        // Relaxed: a unique-number counter; it publishes no data (pairs with nothing).
        None => rt.next_id.fetch_add(1, Ordering::Relaxed),
    };
    let ident = CoroIdent::new(id, b.name, site);
    let (task, for_handle) = registry::insert(worker, || {
        Task::new(rt, ident, (size, scratch_lines), Slot::new(f), stack)
    });
    // SAFETY: the slot was just made with result type `T`, and this is the task's only handle.
    let handle = unsafe { JoinHandle::from_task(for_handle) };
    match worker {
        Some(c) => c.spawn_local(task),
        None => {
            // Plain threads share the outside counters (Relaxed: a statistic, pairs with
            // nothing).
            rt.outside.spawned.fetch_add(1, Ordering::Relaxed);
            rt.inject(task);
        }
    }
    Ok(handle)
}

/// Spawns a coroutine running `f` (Go's `go f()`), like `std::thread::spawn`.
///
/// # Panics
/// If no stack can be allocated; use [`Builder::spawn`] to get the error instead.
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let site = Location::caller();
    let (rt, worker) = sched::current_or_default_ctx();
    match spawn_on(rt, worker, Builder::new(), site, 0, f) {
        Ok(h) => h,
        Err(e) => panic!("gort::spawn: {e}"),
    }
}

/// The largest buffer [`spawn_with_buffer`] hands out (4 MiB minus 64 bytes).
pub const MAX_BUFFER: usize = crate::stack::MAX_SCRATCH;

/// Spawns a coroutine running `f` with a zeroed buffer of `len` bytes that lives at the top of
/// the coroutine's own stack slot, above its frames, for the coroutine's whole life: the
/// per-connection buffer of a server handler (Go's `buf := make([]byte, 4096)`).
///
/// Why not `let mut buf = [0u8; 4096]` in the body: zeroing touches all of it, and with the
/// frames on both sides an idle handler then holds two private stack pages (8 KiB). A heap
/// buffer costs a page of its own as well. This buffer starts 3 KiB into a page, right above
/// the frames, and stays unbacked until it is written (the memory of fresh stacks is zero
/// already, so nothing is cleared), so a handler parked in a read after a short message
/// touches one stack page in all. Go gets the same effect from zeroed spans of its heap and
/// 2 KiB stacks.
///
/// ```
/// let h = gort_runtime::spawn_with_buffer(4096, |buf| {
///     assert!(buf.iter().all(|&b| b == 0));
///     buf[..5].copy_from_slice(b"hello");
///     buf.len()
/// });
/// assert_eq!(h.join().unwrap(), 4096);
/// ```
///
/// # Panics
/// If `len` is over [`MAX_BUFFER`], or no stack can be allocated; use [`Builder::spawn_with_buffer`]
/// to get the error instead.
#[track_caller]
pub fn spawn_with_buffer<F, T>(len: usize, f: F) -> JoinHandle<T>
where
    F: for<'a> FnOnce(&'a mut [u8]) -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn_with_buffer(len, f) {
        Ok(h) => h,
        Err(e) => panic!("gort::spawn_with_buffer: {e}"),
    }
}

/// `go!(expr)`: runs `expr` on a new coroutine, like Go's `go` statement. Variables the
/// expression uses are moved into the coroutine. Evaluates to the [`JoinHandle`].
///
/// ```
/// let h = gort_runtime::go!(1 + 1);
/// assert_eq!(h.join().unwrap(), 2);
/// ```
#[macro_export]
macro_rules! go {
    ($e:expr) => {
        $crate::spawn(move || $e)
    };
}

/// Runs `f` as the main coroutine of the default runtime and returns its value, like Go's
/// `main`. A panic in `f` is resumed on the caller.
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run_in(
        sched::current_or_default(),
        Location::caller(),
        "gort::run",
        f,
    )
}

/// Runs `f` as the coroutine "main" of `rt`, waits for it and resumes its panic on the caller
/// (shared by [`run`] and `Runtime::run`; `what` names the caller in a spawn-failure panic).
pub(crate) fn run_in<F, T>(
    rt: &'static Shared,
    site: &'static Location<'static>,
    what: &str,
    f: F,
) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let h = match spawn_in(rt, Builder::new().name("main"), site, f) {
        Ok(h) => h,
        Err(e) => panic!("{what}: {e}"),
    };
    match h.join() {
        Ok(v) => v,
        Err(e) => panic::resume_unwind(e.into_panic()),
    }
}

/// Lets other coroutines run (Go's `runtime.Gosched`); on a plain thread, yields the thread.
// Inlined (with `Task::yield_now` and `Task::suspend`) so that the switch happens in the
// caller's frame: every frame live across a coroutine switch costs a mispredicted return on
// the way out after the resume, because the CPU's return-stack buffer then holds the
// worker's frames. Measured: yield_pingpong ~80 -> ~40 ns per round trip.
#[inline]
pub fn yield_now() {
    match worker::current_task() {
        Some(t) => t.yield_now(),
        None => std::thread::yield_now(),
    }
}

/// [`yield_now`] in a coroutine; nothing on a plain thread.
pub(crate) fn yield_if_coroutine() {
    if let Some(t) = worker::current_task() {
        t.yield_now();
    }
}

/// Identity of the running coroutine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoroutineInfo {
    id: u64,
    name: Option<String>,
}

impl CoroutineInfo {
    /// The coroutine's id (unique within its runtime, starting at 1).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Its name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// The running coroutine's id and name; `None` on a plain thread.
pub fn current() -> Option<CoroutineInfo> {
    worker::current_task().map(|t| CoroutineInfo {
        id: t.ident.id,
        name: t.ident.name().map(String::from),
    })
}

/// Runs blocking work (a syscall that cannot be made non-blocking, a CPU-heavy computation,
/// `getaddrinfo`) on the blocking thread pool and parks the calling coroutine until it is done.
/// From a plain thread it simply runs `f`. A panic in `f` is resumed on the caller.
pub fn spawn_blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(rt) = worker::current_task().map(|t| t.rt) else {
        return f();
    };
    let packet = Packet::new();
    let p2 = packet.clone();
    rt.blocking.execute(Box::new(move || {
        p2.complete(panic::catch_unwind(AssertUnwindSafe(f)));
    }));
    match packet.wait(WaitReason::Blocking) {
        Ok(v) => v,
        Err(p) => panic::resume_unwind(p),
    }
}

/// [`spawn_blocking`] that waits only until `deadline`: `f`'s value if it finished in time,
/// else an `i/o timeout` error of kind `TimedOut` (the netpoller's
/// [`timeout_error`](crate::netpoll::timeout_error)); a deadline already past fails at once
/// without running `f`. After a timeout `f` keeps running in the background and its value (or
/// panic) is dropped when it finishes, so use this for work that may harmlessly finish late
/// (a `getaddrinfo` lookup), not for work whose effects the caller must see. A panic in `f`
/// that comes in time is resumed on the caller.
///
/// From a plain thread (no pool) `f` runs on a new thread of its own, or inline if no thread
/// can be started (then the caller waits for it, past the deadline).
pub fn spawn_blocking_deadline<F, T>(deadline: Instant, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if Instant::now() >= deadline {
        return Err(crate::netpoll::timeout_error());
    }
    let packet = Packet::new();
    let p2 = packet.clone();
    let job = move || p2.complete(panic::catch_unwind(AssertUnwindSafe(f)));
    match worker::current_task().map(|t| t.rt) {
        Some(rt) => rt.blocking.execute(Box::new(job)),
        None => {
            // `spawn` consumes its closure even when it fails, so the job waits in a shared
            // slot: the new thread takes it, or, if none could be started, the caller does.
            let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(job)));
            let s2 = slot.clone();
            let spawned = std::thread::Builder::new()
                .name("gort-blocking".into())
                .spawn(move || take_and_run(&s2));
            if spawned.is_err() {
                take_and_run(&slot);
            }
        }
    }
    match packet.wait_until(Some(deadline), WaitReason::Blocking) {
        Some(Ok(v)) => Ok(v),
        Some(Err(p)) => panic::resume_unwind(p),
        None => Err(crate::netpoll::timeout_error()),
    }
}

/// Runs the job in `slot` if it is still there.
fn take_and_run(slot: &std::sync::Mutex<Option<impl FnOnce()>>) {
    let job = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(job) = job {
        job();
    }
}
