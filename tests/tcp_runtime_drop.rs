//! Connections that outlive the runtime they were made on (gort's own: Go has one runtime).
//! Its epoll instances close with it, so each descriptor moves to the caller's (or the
//! default) runtime at its next wait, waiters parked at the drop are woken to retry, and
//! deadline timers that lived on the dropped runtime are started again. Before, a plain
//! thread's read on such a connection waited for an event nobody delivered.
//! Every blocking call here runs under a deadline or a watchdog, so a regression fails
//! instead of hanging.
use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gort::net::{TcpListener, TcpStream};

const GUARD: Duration = Duration::from_secs(5);

/// A connected pair made on a runtime of its own, which is dropped before this returns.
/// With `wait`, the server side has waited once (so it joined that runtime's epoll), and with
/// `deadline`, its read deadline is set there (its timer on that runtime).
fn pair_from_dropped_runtime(wait: bool, deadline: Option<Duration>) -> (TcpStream, TcpStream) {
    let rt = gort::runtime::Builder::new().workers(2).build().unwrap();
    let pair = rt.run(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        if wait {
            s.set_read_deadline(Some(Instant::now())).unwrap();
            assert_eq!(
                (&s).read(&mut [0u8; 1]).unwrap_err().kind(),
                ErrorKind::TimedOut
            );
            s.set_read_deadline(None).unwrap();
        }
        if let Some(d) = deadline {
            s.set_read_deadline(Some(Instant::now() + d)).unwrap();
        }
        (c, s)
    });
    drop(rt);
    pair
}

/// Runs `f` on a thread and returns its result, or fails the test if it takes over 10 s.
fn within_watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the call hung (no poller delivers its events?)")
}

/// Writes one byte to `c` after `ms` milliseconds, from a thread; returns `c` with the join.
fn write_later(mut c: TcpStream, ms: u64) -> std::thread::JoinHandle<TcpStream> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        c.write_all(b"x").unwrap();
        c
    })
}

#[test]
fn plain_thread_reads_after_the_runtime_dropped() {
    for wait in [true, false] {
        let (c, s) = pair_from_dropped_runtime(wait, None);
        s.set_read_deadline(Some(Instant::now() + GUARD)).unwrap();
        let w = write_later(c, 100);
        let r = within_watchdog(move || (&s).read(&mut [0u8; 1]).map_err(|e| e.to_string()));
        assert_eq!(r, Ok(1), "registered before the drop: {wait}");
        w.join().unwrap();
    }
}

/// A plain thread parked in a read when the runtime drops is woken, waits again on a live
/// runtime, and gets the byte written after the drop.
#[test]
fn read_parked_across_the_drop_gets_the_data() {
    let rt = gort::runtime::Builder::new().workers(2).build().unwrap();
    let (c, s) = rt.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        s.set_read_deadline(Some(Instant::now() + GUARD)).unwrap();
        let r = (&s).read(&mut [0u8; 1]).map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    // Let the reader park (if it has not yet, it takes the other path, also correct).
    std::thread::sleep(Duration::from_millis(100));
    drop(rt);
    let w = write_later(c, 100);
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("reader hung");
    assert_eq!(r, Ok(1));
    w.join().unwrap();
}

/// A deadline set on the dropped runtime still fires: its timer is started again on the
/// runtime the descriptor moves to.
#[test]
fn deadline_set_before_the_drop_still_fires() {
    let (c, s) = pair_from_dropped_runtime(true, Some(Duration::from_millis(200)));
    let r = within_watchdog(move || (&s).read(&mut [0u8; 1]).map_err(|e| e.kind()));
    assert_eq!(r, Err(ErrorKind::TimedOut));
    drop(c);
}

/// A coroutine of the default runtime can carry on with such a connection.
#[test]
fn default_runtime_coroutine_reads_after_the_drop() {
    let (c, s) = pair_from_dropped_runtime(true, None);
    let w = write_later(c, 100);
    let r = within_watchdog(move || {
        gort::run(move || {
            s.set_read_deadline(Some(Instant::now() + GUARD)).unwrap();
            (&s).read(&mut [0u8; 1]).map_err(|e| e.to_string())
        })
    });
    assert_eq!(r, Ok(1));
    w.join().unwrap();
}
