//! proptest: random programs of spawn, yield, sleep, join and park/unpark on 1 and several
//! workers. Checked: every coroutine finishes exactly once, no wake-up is lost (the program
//! finishes within a generous bound), and join values are right.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Spawn(u8),
    Yield,
    Sleep(u16),
    JoinOldest,
    ParkUntilPoked,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(Op::Spawn),
        2 => Just(Op::Yield),
        1 => (0u16..400).prop_map(Op::Sleep),
        2 => Just(Op::JoinOldest),
        1 => Just(Op::ParkUntilPoked),
    ]
}

fn child(v: u8, finished: Arc<AtomicU64>) -> u64 {
    for _ in 0..(v % 4) {
        gort::yield_now();
    }
    finished.fetch_add(1, Ordering::SeqCst);
    v as u64 * 3 + 1
}

/// Parks until another coroutine sets the flag and unparks us (checks the token protocol:
/// the poke may come before or after we park).
fn park_until_poked() {
    let flag = Arc::new(AtomicBool::new(false));
    let me = gort::park::unparker();
    let f2 = flag.clone();
    gort::spawn(move || {
        gort::yield_now();
        f2.store(true, Ordering::SeqCst);
        me.unpark();
    });
    while !flag.load(Ordering::SeqCst) {
        gort::park::park();
    }
}

fn run_program(workers: usize, programs: Vec<Vec<Op>>) -> Result<(), TestCaseError> {
    let rt = gort::runtime::Builder::new()
        .workers(workers)
        .build()
        .unwrap();
    let finished = Arc::new(AtomicU64::new(0));
    let expected = programs
        .iter()
        .map(|p| p.iter().filter(|o| matches!(o, Op::Spawn(_))).count() as u64)
        .sum::<u64>()
        + programs.len() as u64;
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let handles: Vec<_> = programs
        .into_iter()
        .map(|prog| {
            let finished = finished.clone();
            let errors = errors.clone();
            rt.spawn(move || {
                let mut pending = std::collections::VecDeque::new();
                for o in prog {
                    match o {
                        Op::Spawn(v) => {
                            let f = finished.clone();
                            pending.push_back((v, gort::spawn(move || child(v, f))));
                        }
                        Op::Yield => gort::yield_now(),
                        Op::Sleep(us) => {
                            let d = Duration::from_micros(us as u64);
                            let t = Instant::now();
                            gort::time::sleep(d);
                            if t.elapsed() < d {
                                errors.lock().unwrap().push("sleep woke early".into());
                            }
                        }
                        Op::JoinOldest => {
                            if let Some((v, h)) = pending.pop_front() {
                                let got = h.join().unwrap();
                                if got != v as u64 * 3 + 1 {
                                    errors
                                        .lock()
                                        .unwrap()
                                        .push(format!("join value {got} for {v}"));
                                }
                            }
                        }
                        Op::ParkUntilPoked => park_until_poked(),
                    }
                }
                for (v, h) in pending {
                    if h.join().unwrap() != v as u64 * 3 + 1 {
                        errors.lock().unwrap().push("join value".into());
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !handles.iter().all(|h| h.is_finished()) {
        if Instant::now() > deadline {
            return Err(TestCaseError::fail(format!(
                "hang (lost wake-up?):\n{}",
                rt.dump()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for h in handles {
        h.join().unwrap();
    }
    let errs = errors.lock().unwrap().clone();
    prop_assert!(errs.is_empty(), "{:?}", errs);
    prop_assert_eq!(finished.load(Ordering::SeqCst), expected);
    // Every coroutine (including the park helpers) exits exactly once: none left alive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.stats().live != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    prop_assert_eq!(rt.stats().live, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_one_worker(progs in proptest::collection::vec(proptest::collection::vec(op(), 0..40), 1..8)) {
        run_program(1, progs)?;
    }

    #[test]
    fn random_programs_three_workers(progs in proptest::collection::vec(proptest::collection::vec(op(), 0..40), 1..12)) {
        run_program(3, progs)?;
    }
}
