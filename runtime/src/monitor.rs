//! The monitor thread (Go's `sysmon`), statistics and the goroutine dump.
//!
//! One monitor per runtime. It
//! - warns once when a worker has been inside one coroutine longer than the watchdog
//!   threshold (10 ms by default), naming the coroutine and its spawn site (Go preempts
//!   instead; gort has no preemption, so it reports). Before warning it watches one more
//!   tick and stays silent while the kernel keeps the worker thread waiting for a CPU most of
//!   the time (`/proc/self/task/TID/schedstat`), which on a loaded machine would otherwise
//!   blame a short coroutine for the kernel's preemption;
//! - polls the network and runs expired timers when no worker has done so for 10 ms (all
//!   workers busy in long coroutines), as sysmon does;
//! - trims the stack pool once a second (Go's scavenger): surplus freed stacks give their
//!   pages back to the OS;
//! - during a burst of spawns, makes task-header pages resident ahead of the spawning worker
//!   (`slab::Pool::prefault_ahead`), on another core (no Go counterpart: Go's allocator
//!   faults its heap in on the allocating thread);
//! - prints the goroutine dump of every runtime in the process and exits with status 2 on
//!   SIGQUIT when enabled, like Go.
//!
//! It also refreshes the runtime's coarse clock (`Shared::coarse_clock`, task birth stamps).
//!
//! It checks every half threshold while workers run, and every 50 ms when all are idle, so an
//! idle runtime costs ~20 wake-ups a second.
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::sched::Shared;
use crate::task::{WaitReason, PARKED, RUNNABLE, RUNNING};
use crate::timer::nanotime;

static SIGQUIT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigquit(_: libc::c_int) {
    SIGQUIT.store(true, Ordering::SeqCst);
}

fn install_sigquit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: installing a handler that only stores to an atomic (async-signal-safe);
        // the sigaction struct is zeroed and then filled in.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigquit as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGQUIT, &sa, std::ptr::null_mut());
        }
    });
}

pub(crate) fn start(rt: &'static Shared) -> io::Result<thread::JoinHandle<()>> {
    if rt.cfg.dump_on_sigquit {
        install_sigquit();
    }
    thread::Builder::new()
        .name(format!("{}-monitor", rt.cfg.thread_name))
        .spawn(move || monitor_main(rt))
}

fn monitor_main(rt: &'static Shared) {
    let threshold = rt.cfg.watchdog;
    let busy_tick = threshold
        .map(|t| (t / 2).clamp(Duration::from_millis(1), Duration::from_millis(10)))
        .unwrap_or(Duration::from_millis(10));
    let mut seen: Vec<Seen> = vec![Seen::default(); rt.nworkers()];
    let busy_tick_ns = busy_tick.as_nanos() as u64;
    let mut last_poll = nanotime();
    let mut last_polls: Vec<u64> = vec![0; rt.nworkers()];
    let mut last_trim = nanotime();
    while !rt.shutdown.load(Ordering::SeqCst) {
        let all_idle = rt.nidle.load(Ordering::SeqCst) == rt.nworkers();
        thread::park_timeout(if all_idle {
            Duration::from_millis(50)
        } else {
            busy_tick
        });
        if SIGQUIT.swap(false, Ordering::SeqCst) {
            // One monitor wins the flag and dumps every runtime of the process.
            let all = crate::sched::ALL
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let mut out = String::from("SIGQUIT: quit\n\n");
            for (i, r) in all.iter().enumerate() {
                if all.len() > 1 {
                    let _ = writeln!(out, "runtime {i} ({} workers):\n", r.nworkers());
                }
                out.push_str(&dump(r));
            }
            let _ = io::stderr().lock().write_all(out.as_bytes());
            std::process::exit(2);
        }
        let now = nanotime();
        // Relaxed: a timestamp for task ages; it publishes no other data.
        rt.coarse_clock.store(now, Ordering::Relaxed);
        // During a burst of spawns, make task-header pages resident ahead of the spawner.
        if !all_idle {
            crate::task::prefault_ahead();
        }
        if let Some(th) = threshold {
            let th = th.as_nanos() as u64;
            for (i, w) in rt.workers.iter().enumerate() {
                let id = w.running_id.load(Ordering::Relaxed);
                let sw = w.counters.switches.load(Ordering::Relaxed);
                let s = &mut seen[i];
                if id == 0 || (sw, id) != (s.switches, s.id) {
                    *s = Seen {
                        switches: sw,
                        id,
                        since: now,
                        ..Seen::default()
                    };
                } else if !s.warned && now.saturating_sub(s.since) > th {
                    // Confirm before warning: over a window of at least a tick, the worker
                    // thread must not have spent most of its time waiting for a CPU. On a
                    // loaded machine the kernel can hold a worker off the CPU for longer than
                    // the threshold in the middle of a short coroutine; that is not the
                    // coroutine's doing. (A coroutine blocked in a syscall does not wait for
                    // a CPU, so it is reported.)
                    let tid = w.tid.load(Ordering::SeqCst);
                    match (run_delay_ns(tid), s.confirm) {
                        (None, _) => s.warned = true,
                        (Some(rd), None) => s.confirm = Some((now, rd)),
                        (Some(rd), Some((t0, rd0))) if now.saturating_sub(t0) >= busy_tick_ns => {
                            if descheduled(now - t0, rd.saturating_sub(rd0)) {
                                s.confirm = Some((now, rd));
                            } else {
                                s.warned = true;
                            }
                        }
                        _ => {}
                    }
                    if s.warned {
                        warn_stuck(rt, i, id, now.saturating_sub(s.since));
                    }
                }
            }
        }
        // Scavenger: give the pages of surplus freed stacks back to the OS.
        if now.saturating_sub(last_trim) >= 1_000_000_000 {
            last_trim = now;
            rt.stacks.trim();
        }
        // Backstop for I/O and timers when every worker is busy.
        if now.saturating_sub(last_poll) >= 10_000_000 {
            last_poll = now;
            if rt.next_timer() <= now {
                rt.run_timers(now);
            }
            // A worker's own poller is drained by the worker; poll it from here only when the
            // worker is awake and has not polled since the last check (stuck in a long
            // coroutine), so that waiters on other workers and plain threads still wake.
            for (i, w) in rt.workers.iter().enumerate() {
                // Relaxed: statistics counter written only by its worker; a stale value only
                // delays or adds one harmless non-blocking poll.
                let polls = w.counters.polls.load(Ordering::Relaxed);
                if polls == last_polls[i]
                    && w.sleep.load(Ordering::SeqCst) == crate::sched::AWAKE
                    && w.poller.has_registrations()
                {
                    w.poller.try_poll();
                }
                last_polls[i] = polls;
            }
        }
    }
}

/// What the watchdog last saw of one worker.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// The worker's switch count and running coroutine, unchanged since `since`.
    switches: u64,
    id: u64,
    since: u64,
    /// Whether this stretch was reported.
    warned: bool,
    /// Past the threshold: the start of the confirmation window and the thread's run-queue
    /// wait (`run_delay_ns`) then.
    confirm: Option<(u64, u64)>,
}

/// The time thread `tid` of this process has spent runnable but waiting for a CPU
/// (`/proc/self/task/TID/schedstat`, second field), if the kernel reports it.
fn run_delay_ns(tid: i32) -> Option<u64> {
    if tid <= 0 {
        return None;
    }
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    parse_run_delay(&s)
}

fn parse_run_delay(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// True if, over a window of `window_ns`, a thread that waited `waited_ns` for a CPU was
/// kept off the CPU most of the time (more than three quarters).
fn descheduled(window_ns: u64, waited_ns: u64) -> bool {
    waited_ns.saturating_mul(4) > window_ns.saturating_mul(3)
}

fn warn_stuck(rt: &Shared, worker: usize, id: u64, for_ns: u64) {
    let (name, site) = match crate::registry::find(rt, id) {
        Some(t) => (
            t.ident
                .name()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default(),
            t.ident.site().to_string(),
        ),
        None => (String::new(), "<unknown>".into()),
    };
    let _ = writeln!(
        io::stderr().lock(),
        "gort: watchdog: worker {worker} has run coroutine {id}{name} (spawned at {site}) for over {} ms without yielding; \
         other coroutines on this worker are stalled (move blocking or CPU-heavy work to gort::spawn_blocking, or call gort::yield_now)",
        for_ns / 1_000_000
    );
}

/// A snapshot of a runtime's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Worker threads.
    pub workers: usize,
    /// Coroutines spawned since start.
    pub spawned: u64,
    /// Coroutines alive now (spawned and not finished).
    pub live: u64,
    /// Coroutines parked now.
    pub parked: u64,
    /// Never-run coroutines taken from another worker's queue.
    pub steals: u64,
    /// netpoll calls (blocking or not).
    pub polls: u64,
    /// Idle workers woken to look for work.
    pub wakeups: u64,
    /// Coroutine resumes.
    pub switches: u64,
    /// Threads in the blocking pool.
    pub blocking_threads: usize,
    /// Coroutine stacks handed out now.
    pub stacks_in_use: usize,
    /// Freed stacks kept for reuse.
    pub stacks_cached: usize,
    /// Stack regions mapped (each one memory map).
    pub stack_regions: usize,
    /// Stack slots carved so far (each with its guard page).
    pub stack_slots: usize,
    /// How guard pages are made: "madv_guard_install" (no extra memory map) or
    /// "mprotect" (two maps each, budgeted against vm.max_map_count).
    pub stack_guard: Option<&'static str>,
    /// Per worker: coroutines started on it and not finished. A started coroutine stays on
    /// its worker, so this is how the long-lived ones (connections) are spread; a coroutine
    /// about to start on a worker with clearly more starts on one with fewer instead (see
    /// docs/go-mapping.md).
    pub pinned_per_worker: Vec<usize>,
}

pub(crate) fn stats(rt: &Shared) -> Stats {
    let mut s = Stats {
        workers: rt.nworkers(),
        ..Stats::default()
    };
    let (mut fin, mut parked, mut unparked) = (0u64, 0u64, 0u64);
    for c in rt.workers.iter().map(|w| &w.counters).chain([&rt.outside]) {
        s.spawned += c.spawned.load(Ordering::Relaxed);
        fin += c.finished.load(Ordering::Relaxed);
        parked += c.parked.load(Ordering::Relaxed);
        unparked += c.unparked.load(Ordering::Relaxed);
        s.steals += c.steals.load(Ordering::Relaxed);
        s.polls += c.polls.load(Ordering::Relaxed);
        s.wakeups += c.wakeups.load(Ordering::Relaxed);
        s.switches += c.switches.load(Ordering::Relaxed);
    }
    s.live = s.spawned.saturating_sub(fin);
    s.pinned_per_worker = rt
        .workers
        .iter()
        // Relaxed: a statistic (see `worker::place::bump_pinned`).
        .map(|w| w.pinned.0.load(Ordering::Relaxed))
        .collect();
    s.blocking_threads = rt.blocking.threads();
    let st = rt.stacks.stats();
    s.stacks_in_use = st.in_use;
    s.stacks_cached = st.free_cached;
    s.stack_regions = st.regions;
    s.stack_slots = st.slots_mapped;
    s.stack_guard = st.guard_mode.map(|m| match m {
        crate::stack::GuardMode::GuardInstall => "madv_guard_install",
        crate::stack::GuardMode::Mprotect => "mprotect",
    });
    s.parked = parked.saturating_sub(unparked);
    s
}

fn reason_str(r: WaitReason) -> &'static str {
    match r {
        WaitReason::Other => "parked",
        WaitReason::FdRead => "IO wait: fd read",
        WaitReason::FdWrite => "IO wait: fd write",
        WaitReason::Timer => "sleep",
        WaitReason::Join => "join",
        WaitReason::Chan => "chan",
        WaitReason::Sync => "sync",
        WaitReason::Blocking => "blocking pool",
    }
}

/// Every live coroutine: id, name, state, spawn site and age, in Go's dump layout.
pub(crate) fn dump(rt: &Shared) -> String {
    let mut tasks = crate::registry::snapshot(rt);
    tasks.sort_by_key(|t| t.ident.id);
    let now = nanotime();
    // A started task stays RUNNING while queued (see task.rs): it runs only if a worker says
    // so. (`running_id` may lag a few instructions behind a switch; good enough for a dump.)
    let on_cpu: Vec<u64> = rt
        .workers
        .iter()
        .map(|w| w.running_id.load(Ordering::Relaxed))
        .collect();
    let mut out = String::new();
    for t in tasks {
        let state = match t.phase() {
            RUNNING if on_cpu.contains(&t.ident.id) => "running".to_string(),
            RUNNING => "runnable".to_string(),
            RUNNABLE => "runnable".to_string(),
            PARKED => reason_str(t.wait_reason()).to_string(),
            _ => "dead".to_string(),
        };
        let age = Duration::from_nanos(now.saturating_sub(t.born()));
        let _ = write!(
            out,
            "goroutine {} [{state}, {:.3}s]",
            t.ident.id,
            age.as_secs_f64()
        );
        if let Some(n) = t.ident.name() {
            let _ = write!(out, " \"{n}\"");
        }
        let _ = writeln!(
            out,
            ":\n\tspawned at {}, stack {} KiB\n",
            t.ident.site(),
            t.stack_size() / 1024
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_parsing_and_the_descheduled_rule() {
        assert_eq!(
            parse_run_delay("768640894 425400541 1423\n"),
            Some(425_400_541)
        );
        assert_eq!(parse_run_delay("12"), None);
        assert_eq!(parse_run_delay(""), None);
        // Our own thread's file exists and parses (the kernel has schedstats here).
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert!(run_delay_ns(tid).is_some());
        assert_eq!(run_delay_ns(0), None);
        // Waiting for a CPU most of the window: the kernel's doing, no warning.
        assert!(descheduled(10_000_000, 9_000_000));
        // Running (or blocked in a syscall) most of the window: the coroutine's doing.
        assert!(!descheduled(10_000_000, 5_000_000));
        assert!(!descheduled(10_000_000, 0));
    }
}
