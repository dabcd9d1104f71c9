//! Channel waiter records (runtime/src/chan/waiter.rs): records live on their owner's stack
//! (plain send/recv) or in a box (`select!`), and the queues point to them without reference
//! counts. These tests race the ways a record leaves its queue (a peer's claim, the owner's
//! timeout abort, `close`) across workers and plain threads, and check that every value is
//! delivered exactly once and every parked waiter is woken.
use std::time::Duration;

use gort::chan::{self, RecvTimeoutError, SendTimeoutError};

/// Runs `f` on a plain thread; its result arrives on the returned channel (a coroutine waits
/// for it by parking, not by blocking its worker in `JoinHandle::join`).
fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> chan::Receiver<R> {
    let (tx, rx) = chan::bounded(1);
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx
}

/// Timed sends and receives (abortable tokens: the owner's abort races the peer's claim) on
/// one unbuffered channel, from coroutines on four workers and from plain threads: no value
/// is lost or duplicated, whichever side of each race wins.
#[test]
fn timed_ops_race_handoffs_no_loss_no_dup() {
    const PRODUCERS: u64 = 5;
    const PER: u64 = 1500;
    let rt = gort::runtime::Builder::new().workers(4).build().unwrap();
    rt.run(|| {
        let (tx, rx) = chan::bounded::<u64>(0);
        let (out_tx, out_rx) = chan::unbounded::<u64>();
        let short = Duration::from_micros(30);
        let send_all = move |tx: chan::Sender<u64>, p: u64| {
            for i in 0..PER {
                let mut v = p * PER + i;
                loop {
                    match tx.send_timeout(v, short) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(back)) => v = back,
                        Err(SendTimeoutError::Closed(_)) => panic!("closed early"),
                    }
                }
            }
        };
        let recv_all = move |rx: chan::Receiver<u64>, out: chan::Sender<u64>| loop {
            match rx.recv_timeout(short) {
                Ok(v) => out.send(v).unwrap(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Closed) => return,
            }
        };
        let mut producers = Vec::new();
        for p in 0..PRODUCERS - 1 {
            let tx = tx.clone();
            producers.push(gort::spawn(move || send_all(tx, p)));
        }
        let thread_tx = tx.clone();
        let producer_thread = on_thread(move || send_all(thread_tx, PRODUCERS - 1));
        let mut consumers = Vec::new();
        for _ in 0..3 {
            let (rx, out) = (rx.clone(), out_tx.clone());
            consumers.push(gort::spawn(move || recv_all(rx, out)));
        }
        let (thread_rx, thread_out) = (rx.clone(), out_tx.clone());
        let consumer_thread = on_thread(move || recv_all(thread_rx, thread_out));
        drop(out_tx);
        for p in producers {
            p.join().unwrap();
        }
        producer_thread.recv().unwrap();
        tx.close();
        for c in consumers {
            c.join().unwrap();
        }
        consumer_thread.recv().unwrap();
        let mut seen = vec![false; (PRODUCERS * PER) as usize];
        for v in out_rx.try_iter() {
            assert!(!seen[v as usize], "duplicate {v}");
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "lost values");
    });
}

/// A plain thread and a coroutine play ping-pong over unbuffered channels: every hand-off
/// wakes a waiter of the other kind (a thread's record, a coroutine's record).
#[test]
fn pingpong_between_thread_and_coroutine() {
    const N: u64 = 20_000;
    let (ping_tx, ping_rx) = chan::bounded::<u64>(0);
    let (pong_tx, pong_rx) = chan::bounded::<u64>(0);
    let echo = gort::spawn(move || {
        for v in &ping_rx {
            pong_tx.send(v + 1).unwrap();
        }
    });
    for i in 0..N {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv(), Ok(i + 1));
    }
    drop(ping_tx);
    echo.join().unwrap();
}

/// `close` wakes every parked waiter, plain or `select!`, coroutine or thread: senders get
/// their value back, receivers see the channel closed.
#[test]
fn close_wakes_plain_and_select_waiters() {
    gort::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let (other_tx, other_rx) = chan::bounded::<u32>(0);
        let mut senders = Vec::new();
        for i in 0..4u32 {
            let tx = tx.clone();
            senders.push(gort::spawn(move || tx.send(i).unwrap_err().0));
        }
        for i in 4..8u32 {
            let (tx, other) = (tx.clone(), other_rx.clone());
            senders.push(gort::spawn(move || {
                gort::select! {
                    send(tx, i) -> r => r.unwrap_err().0,
                    recv(other) -> _ => panic!("other channel selected"),
                }
            }));
        }
        let thread_tx = tx.clone();
        let sender_thread = on_thread(move || thread_tx.send(8).unwrap_err().0);
        // Let them park (if one is late, its send fails the same way on the closed channel).
        gort::time::sleep(Duration::from_millis(20));
        assert!(tx.close());
        let mut back: Vec<u32> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        back.push(sender_thread.recv().unwrap());
        back.sort_unstable();
        assert_eq!(back, (0..9).collect::<Vec<_>>());
        // Receivers, plain and select, coroutine and thread.
        let (tx, rx2) = chan::bounded::<u32>(0);
        let mut receivers = Vec::new();
        for _ in 0..3 {
            let plain = rx2.clone();
            receivers.push(gort::spawn(move || plain.recv().is_err()));
            let (sel, other) = (rx2.clone(), other_rx.clone());
            receivers.push(gort::spawn(move || {
                gort::select! {
                    recv(sel) -> v => v.is_err(),
                    recv(other) -> _ => false,
                }
            }));
        }
        let thread_rx = rx2.clone();
        let receiver_thread = on_thread(move || thread_rx.recv().is_err());
        gort::time::sleep(Duration::from_millis(20));
        drop(tx);
        for r in receivers {
            assert!(r.join().unwrap(), "receiver not told the channel closed");
        }
        assert!(receiver_thread.recv().unwrap());
        drop((rx, other_tx));
    });
}
