//! The M:N scheduler (Go's `proc.go`): runtime state shared by all workers.
//!
//! One [`Shared`] per runtime, leaked so that tasks can point at it with `&'static`. Each
//! worker is a thread plus a [`WorkerShared`] (Go's P and M in one): a ring of never-run tasks
//! that others may steal ([`runq`]), an inbox for pinned tasks woken by other threads, a timer
//! heap, its sleep state and its own epoll instance (`netpoll::Poller`), in which it sleeps
//! when idle. The worker loop itself is in [`worker`].
//!
//! Wake-ups without loss: a thread that makes work visible (push to a ring, the injector, an
//! inbox) and then checks whether a worker sleeps, and a worker that publishes that it sleeps
//! and then re-checks for work, both order those steps with SeqCst, so one of them always
//! sees the other (Go's `wakep` / `stopm` rules with `nmspinning`).
//!
//! Differences from Go: tasks that have run are pinned to their worker (see task.rs), so only
//! never-run tasks are stolen; there is no preemption (the watchdog in monitor.rs reports a
//! worker stuck in one coroutine instead).
pub(crate) mod local;
pub(crate) mod runq;
pub(crate) mod worker;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;

use crate::blocking::BlockingPool;
use crate::netpoll::Poller;
use crate::stack::StackPool;
use crate::task::TaskRef;
use crate::timer::TimerHeap;
use runq::RunQueue;

pub(crate) const AWAKE: u8 = 0;
/// Blocked (or about to block) in `epoll_wait` on its own poller.
pub(crate) const SLEEPING: u8 = 1;

/// Per-worker counters; each written only by its worker (Relaxed), summed by `stats`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) spawned: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) parked: AtomicU64,
    pub(crate) unparked: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) wakeups: AtomicU64,
    pub(crate) switches: AtomicU64,
}

/// The coroutines pinned to one worker: started there and not finished (a started coroutine
/// never moves). Only its worker writes it (plain load + store); other workers read it when
/// they place a coroutine they are about to start (`worker/place.rs`). A line of its own, so that those
/// reads do not pull in lines the worker writes on every switch.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Pinned(pub(crate) AtomicUsize);

pub(crate) struct WorkerShared {
    pub(crate) runq: RunQueue<TaskRef>,
    pub(crate) pinned: Pinned,
    pub(crate) inbox: Mutex<VecDeque<TaskRef>>,
    pub(crate) inbox_len: AtomicUsize,
    pub(crate) sleep: AtomicU8,
    /// This worker's epoll instance: descriptors first waited on by its coroutines, and the
    /// eventfd that wakes it when it sleeps.
    pub(crate) poller: Poller,
    /// Set by `wake_idle` before waking this worker as the one spinning worker.
    pub(crate) woken_spinning: AtomicBool,
    pub(crate) thread: OnceLock<Thread>,
    pub(crate) timers: TimerHeap,
    pub(crate) counters: Counters,
    /// Watchdog: id of the coroutine being run (0 = none). The monitor pairs it with
    /// `counters.switches` to notice a worker that stays in one coroutine (Go's `schedtick`).
    pub(crate) running_id: AtomicU64,
    /// The worker thread's kernel id (0 until it starts), for the watchdog's look at its
    /// scheduling statistics.
    pub(crate) tid: AtomicI32,
}

/// Runtime configuration (from `runtime::Builder`).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) stack_size: usize,
    pub(crate) thread_name: String,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) dump_on_sigquit: bool,
    pub(crate) max_blocking: usize,
}

pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) workers: Box<[WorkerShared]>,
    pub(crate) injector: Mutex<VecDeque<TaskRef>>,
    pub(crate) injector_len: AtomicUsize,
    pub(crate) idle: Mutex<Vec<usize>>,
    pub(crate) nidle: AtomicUsize,
    pub(crate) nspinning: AtomicUsize,
    /// The timer role: held by at most one sleeping worker, which bounds its `epoll_wait` by
    /// the nearest timer; other sleepers wait without a timeout (see `worker/idle.rs`).
    pub(crate) timer_role: AtomicBool,
    /// The role holder's index, valid while `timer_role` is held.
    pub(crate) timer_holder: AtomicUsize,
    /// nanotime the role holder's blocked `epoll_wait` times out at (u64::MAX: none); 0 when
    /// nobody watches timers from a sleep.
    pub(crate) timer_poll_until: AtomicU64,
    pub(crate) stacks: StackPool,
    pub(crate) blocking: BlockingPool,
    pub(crate) next_id: AtomicU64,
    /// A coarse `nanotime`, refreshed by the monitor at each of its checks (at most ~50 ms
    /// stale): spawns stamp their task's birth with it instead of reading a clock.
    pub(crate) coarse_clock: AtomicU64,
    /// `nanotime` when the runtime was made: tasks store their birth relative to it.
    pub(crate) epoch: u64,
    pub(crate) shutdown: AtomicBool,
    /// Outside-worker counters (spawns from plain threads).
    pub(crate) outside: Counters,
}

impl Shared {
    pub(crate) fn new(cfg: Config) -> io::Result<&'static Shared> {
        let epoch = crate::timer::nanotime();
        let n = cfg.workers.clamp(1, crate::task::MAX_WORKERS);
        let workers = (0..n)
            .map(|_| {
                Ok(WorkerShared {
                    runq: RunQueue::new(),
                    pinned: Pinned::default(),
                    inbox: Mutex::new(VecDeque::new()),
                    inbox_len: AtomicUsize::new(0),
                    sleep: AtomicU8::new(AWAKE),
                    poller: Poller::new()?,
                    woken_spinning: AtomicBool::new(false),
                    thread: OnceLock::new(),
                    timers: TimerHeap::new(),
                    counters: Counters::default(),
                    running_id: AtomicU64::new(0),
                    tid: AtomicI32::new(0),
                })
            })
            .collect::<io::Result<_>>()?;
        let shared = Shared {
            workers,
            injector: Mutex::new(VecDeque::new()),
            injector_len: AtomicUsize::new(0),
            idle: Mutex::new(Vec::with_capacity(n)),
            nidle: AtomicUsize::new(0),
            nspinning: AtomicUsize::new(0),
            timer_role: AtomicBool::new(false),
            timer_holder: AtomicUsize::new(0),
            timer_poll_until: AtomicU64::new(0),
            stacks: StackPool::new(),
            blocking: BlockingPool::new(
                cfg.max_blocking,
                Duration::from_secs(10),
                format!("{}-blocking", cfg.thread_name),
            ),
            next_id: AtomicU64::new(1),
            coarse_clock: AtomicU64::new(epoch),
            epoch,
            shutdown: AtomicBool::new(false),
            outside: Counters::default(),
            cfg,
        };
        let shared: &'static Shared = Box::leak(Box::new(shared));
        ALL.lock().unwrap_or_else(|e| e.into_inner()).push(shared);
        Ok(shared)
    }

    pub(crate) fn nworkers(&self) -> usize {
        self.workers.len()
    }

    /// Makes an unparked (started, hence pinned) task runnable on its owner worker.
    #[inline]
    pub(crate) fn ready(&'static self, task: TaskRef) {
        // Acquire: pairs with the owner's Release store in `worker::start_fresh` before the
        // first resume (a parked task has run, so `owner` is set).
        let owner = task.owner.load(Ordering::Acquire);
        // The common case (a coroutine wakes a peer of its own worker) stays inline.
        if let Err(task) = worker::try_ready_local(self, owner, task) {
            self.ready_remote(owner, task);
        }
    }

    /// [`Shared::ready`] from another thread than the owner's: through the owner's inbox.
    #[cold]
    #[inline(never)]
    fn ready_remote(&'static self, owner: usize, task: TaskRef) {
        if owner >= self.workers.len() {
            crate::overflow::throw("Shared::ready: parked task has no owner");
        }
        self.send_to(owner, task);
    }

    /// Queues `task` on worker `i` (its inbox, which only that worker drains, so a never-run
    /// task sent here starts there) and wakes the worker if it sleeps.
    pub(crate) fn send_to(&'static self, i: usize, task: TaskRef) {
        let w = &self.workers[i];
        let mut inbox = w.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox.push_back(task);
        // Under the lock, like the drainer's subtraction: counted after the lock is released,
        // a task drained in between would take the count below zero (a wrapped huge value
        // for every reader, such as placement's estimate) until this increment.
        w.inbox_len.fetch_add(1, Ordering::SeqCst);
        drop(inbox);
        self.wake_worker(i);
    }

    /// Wakes worker `i` if it sleeps (it will find its inbox non-empty).
    pub(crate) fn wake_worker(&self, i: usize) {
        let w = &self.workers[i];
        if w.sleep.load(Ordering::SeqCst) != AWAKE {
            w.poller.wake();
        }
    }

    /// A timer was added for `when`: wake the worker watching timers from its sleep if it
    /// would sleep past it. Busy workers check timers in their loop; a sleeper without the
    /// timer role never needs waking for a timer (see `worker/idle.rs`).
    pub(crate) fn timer_added(&self, when: u64) {
        // Pairs with the fence in `idle::sleep_in_poller` between publishing
        // `timer_poll_until` and re-reading the nearest timer.
        fence(Ordering::SeqCst);
        let until = self.timer_poll_until.load(Ordering::SeqCst);
        if until != 0 && when < until {
            let h = self.timer_holder.load(Ordering::SeqCst);
            self.workers[h].poller.wake();
        }
    }

    /// Submits a never-run task from a thread that is not one of our workers.
    pub(crate) fn inject(&self, task: TaskRef) {
        {
            let mut q = self.injector.lock().unwrap_or_else(|e| e.into_inner());
            q.push_back(task);
            self.injector_len.store(q.len(), Ordering::SeqCst);
        }
        self.wake_idle();
    }

    pub(crate) fn inject_batch(&self, tasks: Vec<TaskRef>) {
        let mut q = self.injector.lock().unwrap_or_else(|e| e.into_inner());
        q.extend(tasks);
        self.injector_len.store(q.len(), Ordering::SeqCst);
    }

    /// New stealable work exists: wake one idle worker unless one is already looking
    /// (Go's `wakep`).
    pub(crate) fn wake_idle(&self) {
        fence(Ordering::SeqCst);
        if self.nspinning.load(Ordering::SeqCst) != 0 || self.nidle.load(Ordering::SeqCst) == 0 {
            return;
        }
        if self
            .nspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        let w = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let w = idle.pop();
            if w.is_some() {
                self.nidle.fetch_sub(1, Ordering::SeqCst);
            }
            w
        };
        match w {
            Some(i) => {
                self.workers[i].woken_spinning.store(true, Ordering::SeqCst);
                self.workers[i]
                    .counters
                    .wakeups
                    .fetch_add(1, Ordering::Relaxed);
                self.wake_worker(i);
            }
            None => {
                self.nspinning.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Is there work any idle worker could take (not counting other workers' inboxes)?
    pub(crate) fn has_stealable(&self) -> bool {
        self.injector_len.load(Ordering::SeqCst) != 0
            || self.workers.iter().any(|w| !w.runq.is_empty())
    }

    /// Earliest timer over all workers (nanotime), or u64::MAX.
    pub(crate) fn next_timer(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.timers.next_when())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Runs every expired timer of every worker. Returns how many fired.
    pub(crate) fn run_timers(&'static self, now: u64) -> usize {
        let mut n = 0;
        for w in self.workers.iter() {
            if w.timers.next_when() <= now {
                n += w.timers.run_expired(now);
            }
        }
        n
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for w in self.workers.iter() {
            w.poller.wake();
        }
    }
}

/// Every runtime of the process (for the SIGQUIT dump, which covers them all).
pub(crate) static ALL: Mutex<Vec<&'static Shared>> = Mutex::new(Vec::new());

/// The default runtime, started on first use.
static DEFAULT: OnceLock<&'static Shared> = OnceLock::new();

pub(crate) fn default_config() -> Config {
    let workers = std::env::var("GORT_MAXPROCS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
    Config {
        workers,
        stack_size: crate::stack::DEFAULT_STACK,
        thread_name: "gort-worker".to_string(),
        watchdog: Some(Duration::from_millis(10)),
        dump_on_sigquit: std::env::var_os("GORT_SIGQUIT_DUMP").is_some_and(|v| v != "0"),
        max_blocking: 512,
    }
}

/// The runtime of the calling worker, else the default one (started lazily).
pub(crate) fn current_or_default() -> &'static Shared {
    match worker::current_rt() {
        Some(rt) => rt,
        None => default_rt(),
    }
}

/// [`current_or_default`] for a spawn: also the calling worker's context (one thread-local
/// read), `None` on a plain thread.
#[inline]
pub(crate) fn current_or_default_ctx() -> (&'static Shared, Option<&'static worker::WorkerCtx>) {
    match worker::ctx() {
        Some(c) => (c.rt, Some(c)),
        None => (default_rt(), None),
    }
}

/// The default runtime, started on first use.
fn default_rt() -> &'static Shared {
    DEFAULT.get_or_init(|| {
        let rt = match Shared::new(default_config()) {
            Ok(rt) => rt,
            Err(e) => {
                crate::overflow::throw(&format!("gort: cannot start the default runtime: {e}"))
            }
        };
        if let Err(e) = start(rt) {
            crate::overflow::throw(&format!("gort: cannot start the default runtime: {e}"));
        }
        rt
    })
}

/// Starts the worker threads and the monitor of a runtime.
pub(crate) fn start(rt: &'static Shared) -> io::Result<Vec<thread::JoinHandle<()>>> {
    crate::overflow::install();
    crate::panic::install_hook();
    let mut handles = Vec::with_capacity(rt.nworkers() + 1);
    for i in 0..rt.nworkers() {
        let h = thread::Builder::new()
            .name(format!("{}-{i}", rt.cfg.thread_name))
            .spawn(move || worker::worker_main(rt, i))?;
        let _ = rt.workers[i].thread.set(h.thread().clone());
        handles.push(h);
    }
    handles.push(crate::monitor::start(rt)?);
    Ok(handles)
}
