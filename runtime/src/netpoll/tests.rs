//! Model and race tests of the PollDesc slot protocol.
use super::*;
use proptest::prelude::*;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

fn leaked() -> &'static PollDesc {
    Box::leak(Box::new(PollDesc::new(0)))
}

#[derive(Debug, Clone)]
enum Op {
    Notify(bool, bool),
    Consume(bool),
}

proptest! {
    /// With no waiter, the slot behaves like a sticky "ready" bit per direction that a
    /// consume clears; error notifications never invent readiness.
    #[test]
    fn slot_matches_model(ops in proptest::collection::vec(prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(r, io)| Op::Notify(r, io)),
        any::<bool>().prop_map(Op::Consume),
    ], 1..200)) {
        let pd = leaked();
        let mut ready = [false, false];
        for o in ops {
            match o {
                Op::Notify(r, io) => {
                    let m = if r { Mode::Read } else { Mode::Write };
                    prop_assert!(pd.unblock(m, io).is_none());
                    if io { ready[r as usize] = true; }
                }
                Op::Consume(r) => {
                    let m = if r { Mode::Read } else { Mode::Write };
                    let got = pd.slot(m).compare_exchange(READY, NIL, Ordering::SeqCst, Ordering::SeqCst).is_ok();
                    prop_assert_eq!(got, ready[r as usize]);
                    ready[r as usize] = false;
                }
            }
        }
    }
}

/// A waiting thread and a notifier race 20k times; a lost wake-up would hang the waiter.
#[test]
fn no_lost_wakeups_between_waiter_and_notifier() {
    let pd = leaked();
    let rounds = 20_000u64;
    let count = Arc::new(AtomicU64::new(0));
    let c2 = count.clone();
    let waiter = std::thread::spawn(move || {
        for _ in 0..rounds {
            pd.wait(Mode::Read, false).unwrap();
            c2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..rounds {
        while count.load(Ordering::SeqCst) < i {
            assert!(
                Instant::now() < deadline,
                "waiter stuck at {i}: lost wake-up"
            );
            std::hint::spin_loop();
        }
        if let Some(u) = pd.unblock(Mode::Read, true) {
            u.unpark();
        }
    }
    waiter.join().unwrap();
}

/// Close wakes a parked waiter with the closed error; later waits fail at once.
#[test]
fn close_fails_waiters() {
    let pd = leaked();
    let t = std::thread::spawn(move || pd.wait(Mode::Write, false));
    std::thread::sleep(Duration::from_millis(10));
    pd.closing.store(true, Ordering::SeqCst);
    if let Some(u) = pd.unblock(Mode::Write, false) {
        u.unpark();
    }
    assert!(is_closed_error(&t.join().unwrap().unwrap_err()));
    assert!(is_closed_error(&pd.wait(Mode::Read, false).unwrap_err()));
}

/// A drained wait (the caller skipped the syscall that would fail with `EAGAIN`) returns `Ok`
/// when an error is already pending, so the caller's syscall runs first; a close while it is
/// parked wakes it (with the error, or with `Ok` if the close raced its parking: either way
/// the caller's next syscall and wait report the close).
#[test]
fn drained_wait_defers_pending_errors_to_the_syscall() {
    let pd = leaked();
    let t = std::thread::spawn(move || pd.wait(Mode::Read, true));
    let deadline = Instant::now() + Duration::from_secs(20);
    while pd.rg.load(Ordering::SeqCst) == NIL {
        assert!(Instant::now() < deadline, "waiter never installed itself");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(10));
    pd.closing.store(true, Ordering::SeqCst);
    if let Some(u) = pd.unblock(Mode::Read, false) {
        u.unpark();
    }
    match t.join().unwrap() {
        Ok(()) => {}
        Err(e) => assert!(is_closed_error(&e), "{e}"),
    }
    assert!(pd.wait(Mode::Read, true).is_ok());
    assert!(is_closed_error(&pd.wait(Mode::Read, false).unwrap_err()));
    // Readiness that arrived before the wait is consumed without parking.
    let pd = leaked();
    assert!(pd.unblock(Mode::Read, true).is_none());
    assert!(pd.wait(Mode::Read, true).is_ok());
    assert_eq!(pd.rg.load(Ordering::SeqCst), NIL);
}

/// The close guard of a poller (see poller.rs): users racing with `close_when_idle` never run
/// after the descriptors are closed, every closure that ran saw them open, and they are
/// closed exactly once, by whoever left last.
#[test]
fn poller_close_waits_for_users() {
    for round in 0..20 {
        let p: &'static Poller = Box::leak(Box::new(Poller::new().unwrap()));
        let ran = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ran = ran.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while p
                        .with_fds(|epfd, evfd| {
                            // Open while we are inside: a valid descriptor has flags.
                            // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
                            let ok = unsafe {
                                libc::fcntl(epfd, libc::F_GETFD) >= 0
                                    && libc::fcntl(evfd, libc::F_GETFD) >= 0
                            };
                            assert!(ok, "with_fds ran on a closed descriptor");
                            assert!(!p.is_closed(), "with_fds ran after the close");
                        })
                        .is_some()
                    {
                        n += 1;
                        if n > 10_000_000 {
                            panic!("close never took effect");
                        }
                    }
                    ran.fetch_add(n, Ordering::SeqCst);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(50 * round));
        p.close_when_idle();
        for t in threads {
            t.join().unwrap();
        }
        assert!(p.is_closed());
        assert!(p.with_fds(|_, _| ()).is_none());
        p.wake(); // a late waker does nothing
    }
}
