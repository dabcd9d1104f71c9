//! Runtime handles and configuration: [`Builder`], [`Runtime`], and the introspection
//! functions ([`num_goroutines`], [`stats`], [`dump`]) for the current (or default) runtime.
use std::io;
use std::panic::Location;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::join::JoinHandle;
use crate::monitor;
pub use crate::monitor::Stats;
use crate::sched::{self, Config, Shared};
use crate::spawn;

/// Configures and starts a runtime.
#[derive(Clone, Debug)]
pub struct Builder {
    cfg: Config,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Defaults: one worker per CPU (or `GORT_MAXPROCS`), 64 KiB stacks, watchdog at 10 ms,
    /// SIGQUIT dump when `GORT_SIGQUIT_DUMP=1`, up to 512 blocking threads.
    pub fn new() -> Builder {
        Builder {
            cfg: sched::default_config(),
        }
    }

    /// Number of worker threads (at least 1, at most 65535).
    pub fn workers(mut self, n: usize) -> Builder {
        self.cfg.workers = n.clamp(1, crate::task::MAX_WORKERS);
        self
    }

    /// Default usable stack size of coroutines, in bytes (at least 16 KiB).
    pub fn default_stack_size(mut self, bytes: usize) -> Builder {
        self.cfg.stack_size = bytes.max(crate::stack::MIN_STACK);
        self
    }

    /// Prefix of worker thread names (`PREFIX-0`, `PREFIX-1`, ...).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Builder {
        self.cfg.thread_name = prefix.into();
        self
    }

    /// Warn when a worker runs one coroutine longer than this; `None` disables.
    pub fn watchdog(mut self, threshold: Option<Duration>) -> Builder {
        self.cfg.watchdog = threshold;
        self
    }

    /// Print every coroutine and exit with status 2 on SIGQUIT, like Go.
    pub fn dump_on_sigquit(mut self, on: bool) -> Builder {
        self.cfg.dump_on_sigquit = on;
        self
    }

    /// Cap on blocking-pool threads (see `spawn_blocking`).
    pub fn max_blocking_threads(mut self, n: usize) -> Builder {
        self.cfg.max_blocking = n.max(1);
        self
    }

    /// Starts the worker threads.
    pub fn build(self) -> io::Result<Runtime> {
        let shared = Shared::new(self.cfg)?;
        let threads = sched::start(shared)?;
        Ok(Runtime {
            shared,
            threads: Mutex::new(threads),
        })
    }
}

/// A running runtime. Dropping it stops its workers; coroutines still parked then are
/// leaked, never unwound. Its epoll instances and wake-up eventfds (two descriptors per
/// worker) are closed once no other thread is using them (see netpoll/poller.rs), unless it
/// is dropped on one of its own workers. A connection made on it that outlives it cannot wait
/// any more: its first wait fails, and one already registered is never woken again.
/// Runtimes are meant to live for the process (the default one always does): a dropped
/// one's scheduler state (a few KiB per worker) is not freed.
pub struct Runtime {
    shared: &'static Shared,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
}

impl Runtime {
    /// Spawns a coroutine on this runtime.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match spawn::spawn_in(self.shared, spawn::Builder::new(), Location::caller(), f) {
            Ok(h) => h,
            Err(e) => panic!("gort::Runtime::spawn: {e}"),
        }
    }

    /// Spawns with a coroutine [`spawn::Builder`]'s settings.
    #[track_caller]
    pub fn spawn_with<F, T>(&self, b: spawn::Builder, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn::spawn_in(self.shared, b, Location::caller(), f)
    }

    /// Runs `f` as a coroutine on this runtime and waits for its value (resumes its panic).
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn::run_in(self.shared, Location::caller(), "gort::Runtime::run", f)
    }

    /// Worker count.
    pub fn workers(&self) -> usize {
        self.shared.nworkers()
    }

    /// Counter snapshot.
    pub fn stats(&self) -> Stats {
        monitor::stats(self.shared)
    }

    /// Goroutine dump of this runtime.
    pub fn dump(&self) -> String {
        monitor::dump(self.shared)
    }

    /// Stops the workers and waits for their threads.
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
        let me = thread::current().id();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let mut all_joined = true;
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            } else {
                all_joined = false; // dropped on one of its own workers, which runs on
            }
        }
        if all_joined {
            // No worker or monitor polls any more: the pollers close their descriptors as
            // soon as no straggler (a late waker, a surviving connection) is using them.
            for w in self.shared.workers.iter() {
                w.poller.close_when_idle();
            }
            // Descriptors that outlive the runtime move to another at their next wait.
            crate::netpoll::rehome_all(self.shared as *const _ as usize);
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers())
            .finish()
    }
}

/// Live coroutines of the current (or default) runtime (Go's `runtime.NumGoroutine`).
pub fn num_goroutines() -> usize {
    stats().live as usize
}

/// Counter snapshot of the current (or default) runtime.
pub fn stats() -> Stats {
    monitor::stats(sched::current_or_default())
}

/// Goroutine dump of the current (or default) runtime: every live coroutine with id, name,
/// state, spawn site and age.
pub fn dump() -> String {
    monitor::dump(sched::current_or_default())
}
