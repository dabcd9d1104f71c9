//! Channel and select! behaviour, ported in spirit from Go's `runtime/chan_test.go` and
//! `select` tests (our own code; each test names the Go test it mirrors).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::chan::{self, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

// Go: TestChan (unbuffered part): a send does not complete before a receiver took the value.
#[test]
fn unbuffered_handoff() {
    gort::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let sent = Arc::new(AtomicBool::new(false));
        let s2 = sent.clone();
        let h = gort::spawn(move || {
            tx.send(7).unwrap();
            s2.store(true, Ordering::SeqCst);
        });
        gort::time::sleep(Duration::from_millis(20));
        assert!(
            !sent.load(Ordering::SeqCst),
            "send returned before a receiver took the value"
        );
        assert_eq!(rx.try_recv(), Ok(7));
        h.join().unwrap();
        assert!(sent.load(Ordering::SeqCst));
        assert_eq!(rx.cap(), Some(0));
    });
}

// Go: TestChan (buffered part): FIFO order, len/cap, try_send on full.
#[test]
fn buffered_fifo() {
    gort::run(|| {
        let (tx, rx) = chan::bounded(4);
        for i in 0..4 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.len(), 4);
        assert_eq!(tx.cap(), Some(4));
        assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
        let h = gort::spawn(move || {
            for i in 4..1000 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<i32> = rx.iter().collect();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        h.join().unwrap();
    });
}

// Go: TestChanCloseWakesAll (close wakes blocked receivers and senders; receivers drain).
#[test]
fn close_wakes_all_receivers_and_senders() {
    gort::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let rs: Vec<_> = (0..10)
            .map(|_| {
                let rx = rx.clone();
                gort::spawn(move || rx.recv())
            })
            .collect();
        gort::time::sleep(Duration::from_millis(10));
        assert!(tx.close());
        assert!(!tx.close());
        for r in rs {
            assert!(r.join().unwrap().is_err());
        }
        // Senders blocked on a full channel get their value back.
        let (tx, rx) = chan::bounded::<u32>(1);
        tx.send(1).unwrap();
        let ss: Vec<_> = (0..10)
            .map(|i| {
                let tx = tx.clone();
                gort::spawn(move || tx.send(100 + i))
            })
            .collect();
        gort::time::sleep(Duration::from_millis(10));
        tx.close();
        for (i, s) in ss.into_iter().enumerate() {
            assert_eq!(s.join().unwrap().unwrap_err().0, 100 + i as u32);
        }
        assert_eq!(rx.recv(), Ok(1)); // drain, then closed
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        assert!(tx.send(5).is_err());
    });
}

#[test]
fn drop_senders_closes_and_timeouts() {
    let (tx, rx) = chan::unbounded::<u8>();
    assert_eq!(rx.cap(), None);
    let t = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(15)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(15));
    tx.send(3).unwrap();
    drop(tx);
    assert_eq!(rx.iter().collect::<Vec<_>>(), vec![3]);
    let (tx, rx) = chan::bounded::<u8>(0);
    assert_eq!(
        tx.send_timeout(1, Duration::from_millis(5)),
        Err(SendTimeoutError::Timeout(1))
    );
    drop(rx);
    assert!(tx.send(2).is_err());
}

// Go: TestSelectFairness: with 4 ready arms each is picked ~uniformly (chi-square, df=3).
#[test]
fn select_fairness() {
    let chans: Vec<_> = (0..4).map(|_| chan::bounded::<usize>(1)).collect();
    let mut counts = [0usize; 4];
    const N: usize = 4000;
    for _ in 0..N {
        for (i, (tx, _)) in chans.iter().enumerate() {
            let _ = tx.try_send(i);
        }
        let i = gort::select! {
            recv(chans[0].1) -> v => v.unwrap(),
            recv(chans[1].1) -> v => v.unwrap(),
            recv(chans[2].1) -> v => v.unwrap(),
            recv(chans[3].1) -> v => v.unwrap(),
        };
        counts[i] += 1;
    }
    let e = N as f64 / 4.0;
    let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
    // p = 1e-6 for df=3 is ~30.7; generous slack.
    assert!(chi2 < 35.0, "unfair select: {counts:?} chi2={chi2}");
}

// Go: TestSelectDefault (select with default never blocks).
#[test]
fn select_default_never_blocks() {
    gort::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let t = Instant::now();
        for _ in 0..1000 {
            let r = gort::select! {
                recv(rx) -> _ => 1,
                send(tx, 5) -> _ => 2,
                default => 0,
            };
            assert_eq!(r, 0);
        }
        assert!(t.elapsed() < Duration::from_secs(2));
        let only_default = gort::select! { default => 3 };
        assert_eq!(only_default, 3);
    });
}

// Go: TestSelectTimeout-like: a timeout arm fires no earlier than asked.
#[test]
fn select_timeout_not_early() {
    gort::run(|| {
        let (_tx, rx) = chan::bounded::<u32>(0);
        for ms in [1u64, 5, 20] {
            let t = Instant::now();
            let d = Duration::from_millis(ms);
            let timed_out = gort::select! {
                recv(rx) -> _ => false,
                recv(gort::time::after(d)) -> _ => true,
            };
            assert!(timed_out);
            assert!(
                t.elapsed() >= d,
                "timeout fired early: {:?} < {d:?}",
                t.elapsed()
            );
        }
    });
}

// Go: TestSelectDuplicateChannel / TestSelectStress: racing selects never lose or
// duplicate a value. Producers send on two unbuffered channels (some via select send arms),
// many consumers select over both; every value is received exactly once.
#[test]
fn racing_selects_no_loss_no_dup() {
    let rt = gort::runtime::Builder::new().workers(4).build().unwrap();
    rt.run(|| {
        const PRODUCERS: u64 = 8;
        const PER: u64 = 2000;
        let (a_tx, a_rx) = chan::bounded::<u64>(0);
        let (b_tx, b_rx) = chan::bounded::<u64>(3);
        let (out_tx, out_rx) = chan::unbounded::<u64>();
        let mut consumers = Vec::new();
        for _ in 0..6 {
            let (a, b, out) = (a_rx.clone(), b_rx.clone(), out_tx.clone());
            consumers.push(gort::spawn(move || loop {
                let v = gort::select! {
                    recv(a) -> v => v,
                    recv(b) -> v => v,
                };
                match v {
                    Ok(v) => out.send(v).unwrap(),
                    Err(_) => return,
                }
            }));
        }
        drop(out_tx);
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let (a, b) = (a_tx.clone(), b_tx.clone());
            producers.push(gort::spawn(move || {
                for i in 0..PER {
                    let v = p * PER + i;
                    if i % 2 == 0 {
                        gort::select! {
                            send(a, v) -> r => r.unwrap(),
                            send(b, v) -> r => r.unwrap(),
                        }
                    } else {
                        a.send(v).unwrap();
                    }
                }
            }));
        }
        // A plain thread consumer too.
        let (a, b) = (a_rx.clone(), b_rx.clone());
        let (t_tx, t_rx) = chan::unbounded::<u64>();
        let th = std::thread::spawn(move || {
            let mut n = 0;
            loop {
                let v = gort::select! { recv(a) -> v => v, recv(b) -> v => v };
                match v {
                    Ok(v) => {
                        t_tx.send(v).unwrap();
                        n += 1;
                    }
                    Err(_) => return n,
                }
            }
        });
        for p in producers {
            p.join().unwrap();
        }
        a_tx.close();
        b_tx.close();
        for c in consumers {
            c.join().unwrap();
        }
        let _ = th.join().unwrap();
        let mut seen = vec![false; (PRODUCERS * PER) as usize];
        for v in out_rx.iter().chain(t_rx.iter()) {
            assert!(!seen[v as usize], "duplicate {v}");
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "lost values");
    });
}

// Go: TestSelectCloseReady: an arm on a closed channel is ready; send arm reports closed.
#[test]
fn select_closed_arm_ready() {
    let (tx, rx) = chan::bounded::<u32>(0);
    let (tx2, _rx2) = chan::bounded::<u32>(0);
    tx.close();
    let r = gort::select! { recv(rx) -> v => v.is_err(), recv(gort::time::after(Duration::from_secs(5))) -> _ => false };
    assert!(r);
    tx2.close();
    let r = gort::select! { send(tx2, 9) -> res => res.unwrap_err().0 };
    assert_eq!(r, 9);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    // Random producer/consumer programs across coroutines and plain threads. Model: every
    // value sent is received exactly once; per producer, a single consumer sees its values in
    // send order (FIFO per channel); counts match.
    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn delivery_model(
            cap in 0usize..4,
            producers in proptest::collection::vec((1u64..60, any::<bool>()), 1..5),
            consumers in proptest::collection::vec(any::<bool>(), 1..4),
            use_select in any::<bool>(),
        ) {
            let (tx, rx) = chan::bounded::<(usize, u64)>(cap);
            let (tx2, rx2) = chan::bounded::<(usize, u64)>(cap);
            let total: u64 = producers.iter().map(|p| p.0).sum();
            let mut ph = Vec::new();
            for (pi, &(n, on_thread)) in producers.iter().enumerate() {
                let (tx, tx2) = (tx.clone(), tx2.clone());
                let body = move || for i in 0..n {
                    if use_select {
                        gort::select! { send(tx, (pi, i)) -> r => r.unwrap(), send(tx2, (pi, i)) -> r => r.unwrap() }
                    } else {
                        tx.send((pi, i)).unwrap();
                    }
                };
                if on_thread {
                    ph.push(Err(std::thread::spawn(body)));
                } else {
                    ph.push(Ok(gort::spawn(body)));
                }
            }
            drop(tx);
            drop(tx2);
            let mut ch = Vec::new();
            for &on_thread in &consumers {
                let (rx, rx2) = (rx.clone(), rx2.clone());
                let body = move || {
                    let mut got = Vec::new();
                    let (mut a, mut b) = (true, true);
                    while a || b {
                        let v = gort::select! { recv(rx) -> v => (0, v), recv(rx2) -> v => (1, v) };
                        match v { (_, Ok(x)) => got.push(x), (0, Err(_)) => a = false, (_, Err(_)) => b = false }
                        if !a && !b { break; }
                        if !a { for x in rx2.iter() { got.push(x); } break; }
                        if !b { for x in rx.iter() { got.push(x); } break; }
                    }
                    got
                };
                if on_thread { ch.push(Err(std::thread::spawn(body))); } else { ch.push(Ok(gort::spawn(body))); }
            }
            for h in ph { match h { Ok(h) => h.join().unwrap(), Err(h) => h.join().unwrap() } }
            let mut all = Vec::new();
            for h in ch {
                let got = match h { Ok(h) => h.join().unwrap(), Err(h) => h.join().unwrap() };
                if !use_select {
                    // One channel: FIFO per producer as seen by each consumer.
                    let mut last = vec![None; producers.len()];
                    for &(p, i) in &got {
                        prop_assert!(last[p].is_none_or(|l| l < i));
                        last[p] = Some(i);
                    }
                }
                all.extend(got);
            }
            prop_assert_eq!(all.len() as u64, total);
            all.sort();
            all.dedup();
            prop_assert_eq!(all.len() as u64, total);
        }
    }
}
