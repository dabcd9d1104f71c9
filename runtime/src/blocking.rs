//! Thread pool for blocking work (file I/O, DNS, user `spawn_blocking`).
//!
//! What: jobs go to a FIFO queue. `execute` wakes an idle thread if there is one,
//! else starts a new thread while below `max_threads`, else leaves the job queued for
//! the next thread that finishes. A thread idle for `keep_alive` retires. Each job runs
//! under `catch_unwind`, so a panicking job does not take its thread down; reporting
//! the panic is the caller's job (wrap the closure).
//!
//! Invariants (all under the one mutex): `idle` = threads waiting - wake tokens not yet
//! taken (`notified`); a token is only issued when `idle > 0`, and a waiting thread
//! retires on timeout only when no token is outstanding, so a queued job is never left
//! without a thread that will look at the queue. `threads` counts live threads,
//! including ones being started.
//!
//! If starting a thread fails (EAGAIN, out of memory), the job stays queued when some
//! thread exists (it will get to it); with no thread at all it runs inline on the
//! caller as a last resort, which blocks the caller, rather than being lost.
//!
//! Go counterpart: Go has no separate pool; a goroutine in a blocking syscall keeps its
//! M and `entersyscall`/sysmon hand its P to another M. We cannot preempt a blocking
//! call inside a coroutine, so blocking work is shipped to these threads instead, the
//! way tokio's `spawn_blocking` does.
// The scheduler (merged separately) is the caller; until then parts are test-only.


use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    notified: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    name: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pool of threads for blocking jobs. Send + Sync.
pub(crate) struct BlockingPool {
    shared: Arc<Shared>,
}

impl BlockingPool {
    /// A pool of at most `max_threads` (at least 1) threads named `thread_name`, each
    /// retiring after `keep_alive` without work.
    pub(crate) fn new(max_threads: usize, keep_alive: Duration, thread_name: String) -> Self {
        BlockingPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    notified: 0,
                    shutdown: false,
                }),
                cond: Condvar::new(),
                max_threads: max_threads.max(1),
                keep_alive,
                name: thread_name,
            }),
        }
    }

    /// Runs `job` on a pool thread. Never blocks the caller, except in the last-resort
    /// case described in the module docs.
    pub(crate) fn execute(&self, job: Job) {
        let mut st = self.shared.lock();
        st.queue.push_back(job);
        if st.idle > 0 {
            st.idle -= 1;
            st.notified += 1;
            self.shared.cond.notify_one();
            return;
        }
        if st.threads >= self.shared.max_threads {
            return; // a busy thread takes it when done
        }
        st.threads += 1;
        drop(st);
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name(self.shared.name.clone())
            .spawn(move || worker(shared));
        if spawned.is_err() {
            let mut st = self.shared.lock();
            st.threads -= 1;
            if st.threads == 0 {
                // No thread exists to run the queue: drain it here.
                while let Some(job) = st.queue.pop_front() {
                    drop(st);
                    run(job);
                    st = self.shared.lock();
                }
            }
        }
    }

    /// Live threads, including ones starting up.
    pub(crate) fn threads(&self) -> usize {
        self.shared.lock().threads
    }
}

impl Drop for BlockingPool {
    /// Threads finish the queued jobs, then exit; they are not joined.
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.cond.notify_all();
    }
}

fn run(job: Job) {
    // The payload is dropped here; the caller wraps its closure to report panics.
    let _ = catch_unwind(AssertUnwindSafe(job));
}

fn worker(shared: Arc<Shared>) {
    let mut st = shared.lock();
    'serve: loop {
        while let Some(job) = st.queue.pop_front() {
            drop(st);
            run(job);
            st = shared.lock();
        }
        if st.shutdown {
            break;
        }
        st.idle += 1;
        let deadline = Instant::now() + shared.keep_alive;
        loop {
            if st.notified > 0 {
                st.notified -= 1; // our `idle` was taken back by the notifier
                continue 'serve;
            }
            if st.shutdown {
                st.idle -= 1;
                continue 'serve; // drain what is left, then exit
            }
            let now = Instant::now();
            if now >= deadline {
                st.idle -= 1;
                break 'serve;
            }
            st = shared
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    st.threads -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, unbounded};

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn jobs_run() {
        let pool = BlockingPool::new(4, Duration::from_secs(5), "blk".into());
        let (tx, rx) = unbounded();
        for i in 0..100 {
            let tx = tx.clone();
            pool.execute(Box::new(move || tx.send(i).unwrap()));
        }
        let mut got: Vec<i32> = (0..100).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert!(pool.threads() <= 4);
    }

    #[test]
    fn grows_to_cap_then_queues() {
        let pool = BlockingPool::new(3, Duration::from_secs(5), "blk".into());
        let (started_tx, started_rx) = unbounded();
        let (release_tx, release_rx) = bounded::<()>(0);
        for i in 0..8 {
            let (s, r) = (started_tx.clone(), release_rx.clone());
            pool.execute(Box::new(move || {
                s.send(i).unwrap();
                r.recv().unwrap();
            }));
        }
        // Three jobs block concurrently (so three threads exist); no more threads.
        for _ in 0..3 {
            started_rx.recv_timeout(WAIT).unwrap();
        }
        assert_eq!(pool.threads(), 3);
        for _ in 0..8 {
            release_tx.send_timeout((), WAIT).unwrap();
        }
        for _ in 3..8 {
            started_rx.recv_timeout(WAIT).unwrap();
        }
        assert!(pool.threads() <= 3);
    }

    #[test]
    fn idle_threads_retire() {
        let pool = BlockingPool::new(4, Duration::from_millis(50), "blk".into());
        let (tx, rx) = unbounded();
        for _ in 0..4 {
            let tx = tx.clone();
            pool.execute(Box::new(move || tx.send(()).unwrap()));
        }
        for _ in 0..4 {
            rx.recv_timeout(WAIT).unwrap();
        }
        let deadline = Instant::now() + WAIT;
        while pool.threads() > 0 {
            assert!(Instant::now() < deadline, "threads did not retire");
            std::thread::sleep(Duration::from_millis(10));
        }
        // A retired pool starts threads again.
        let tx2 = tx.clone();
        pool.execute(Box::new(move || tx2.send(()).unwrap()));
        rx.recv_timeout(WAIT).unwrap();
    }

    #[test]
    fn panicking_job_does_not_break_pool() {
        let pool = BlockingPool::new(1, Duration::from_secs(5), "blk".into());
        let (tx, rx) = unbounded();
        pool.execute(Box::new(|| panic!("job panics on purpose")));
        for i in 0..3 {
            let tx = tx.clone();
            pool.execute(Box::new(move || tx.send(i).unwrap()));
        }
        for i in 0..3 {
            assert_eq!(rx.recv_timeout(WAIT).unwrap(), i);
        }
        assert!(pool.threads() <= 1);
    }

    #[test]
    fn drop_finishes_queued_jobs() {
        let pool = BlockingPool::new(1, Duration::from_secs(5), "blk".into());
        let (tx, rx) = unbounded();
        for i in 0..10 {
            let tx = tx.clone();
            pool.execute(Box::new(move || tx.send(i).unwrap()));
        }
        drop(pool);
        for i in 0..10 {
            assert_eq!(rx.recv_timeout(WAIT).unwrap(), i);
        }
    }
}
