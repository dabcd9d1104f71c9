//! Deadline tests (Go: net/timeout_test.go behaviours). Only "not earlier than the deadline"
//! is asserted about time.
#![allow(clippy::needless_borrow)] // `(&s).read(..)` spells out the shared-reference Read impl.
use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::net::{Conn, TcpListener, TcpStream, UnixStream};

mod common;
use common::tcp_pair as pair;
use common::wait_until;

/// A read on `c` (no data coming) with a deadline in the past fails at once with `TimedOut`.
fn past_deadline_read(c: &dyn Conn) -> io::Error {
    c.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
        .unwrap();
    let e = c.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    e
}

/// A read on `c` (no data coming) parks and fails with `TimedOut`, not before its deadline.
fn future_deadline_read(c: &dyn Conn) {
    let d = Instant::now() + Duration::from_millis(30);
    c.set_read_deadline(Some(d)).unwrap();
    let e = c.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(Instant::now() >= d);
}

/// Bytes `s` sent are returned by a read on `c` after its deadline passed; the next read,
/// which would wait, fails with `TimedOut`.
fn buffered_data_read_after_deadline(c: &dyn Conn, s: &dyn Conn) {
    s.write(b"abc").unwrap();
    gort::time::sleep(Duration::from_millis(20));
    c.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
        .unwrap();
    let mut b = [0u8; 8];
    assert_eq!(c.read(&mut b).unwrap(), 3);
    assert_eq!(&b[..3], b"abc");
    assert_eq!(c.read(&mut b).unwrap_err().kind(), ErrorKind::TimedOut);
}

// Go: TestReadTimeout (past deadline fails at once; message and kind)
#[test]
fn past_deadline_fails_at_once() {
    gort::run(|| {
        let (c, _s) = pair();
        let e = past_deadline_read(&c);
        let (l, r) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
        assert_eq!(e.to_string(), format!("read tcp {l}->{r}: i/o timeout"));
    });
}

// Go: TestReadTimeoutFluctuation-style future deadline (never earlier)
#[test]
fn future_deadline_not_early() {
    gort::run(|| {
        let (c, _s) = pair();
        future_deadline_read(&c);
    });
}

// Buffered data is returned after the deadline; only a wait fails.
#[test]
fn buffered_data_after_deadline() {
    gort::run(|| {
        let (c, s) = pair();
        buffered_data_read_after_deadline(&c, &s);
    });
}

// Go: TestReadTimeout (Go runs it on TCP), on a unix stream: a past deadline fails at once.
#[test]
fn unix_past_deadline_fails_at_once() {
    gort::run(|| {
        let (c, _s) = UnixStream::pair().unwrap();
        let e = past_deadline_read(&c);
        assert!(e.to_string().ends_with(": i/o timeout"), "{e}");
    });
}

// Go: TestReadTimeoutFluctuation-style (Go runs it on TCP), on a unix stream: a parked read
// fails with TimedOut at its deadline, never earlier.
#[test]
fn unix_future_deadline_not_early() {
    gort::run(|| {
        let (c, _s) = UnixStream::pair().unwrap();
        future_deadline_read(&c);
    });
}

// On a unix stream too, buffered data is returned after the deadline; only a wait fails.
#[test]
fn unix_buffered_data_after_deadline() {
    gort::run(|| {
        let (c, s) = UnixStream::pair().unwrap();
        buffered_data_read_after_deadline(&c, &s);
    });
}

// Go: TestVariousDeadlines / TestReadTimeoutMustNotReturn: extended, cleared, changed while parked.
#[test]
fn deadline_changed_while_parked() {
    gort::run(|| {
        let (c, s) = pair();
        let c = Arc::new(c);
        // Parked with a far deadline, then moved into the past: wakes with TimedOut.
        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))
            .unwrap();
        let c2 = c.clone();
        let h = gort::spawn(move || (&*c2).read(&mut [0u8; 4]));
        gort::time::sleep(Duration::from_millis(20));
        c.set_read_deadline(Some(Instant::now())).unwrap();
        assert_eq!(h.join().unwrap().unwrap_err().kind(), ErrorKind::TimedOut);
        // Parked with a near deadline, then cleared: the read waits for data.
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(30)))
            .unwrap();
        let c3 = c.clone();
        let h = gort::spawn(move || (&*c3).read(&mut [0u8; 4]));
        gort::time::sleep(Duration::from_millis(5));
        c.set_read_deadline(None).unwrap();
        gort::time::sleep(Duration::from_millis(60));
        (&s).write_all(b"x").unwrap();
        assert_eq!(h.join().unwrap().unwrap(), 1);
        // Extended: a deadline moved later does not fire at the old time.
        let t0 = Instant::now();
        c.set_read_deadline(Some(t0 + Duration::from_millis(10)))
            .unwrap();
        c.set_read_deadline(Some(t0 + Duration::from_millis(40)))
            .unwrap();
        assert_eq!(
            (&*c).read(&mut [0u8; 4]).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
        assert!(Instant::now() >= t0 + Duration::from_millis(40));
    });
}

// Go: TestWriteTimeout (write deadline on a full socket buffer)
#[test]
fn write_deadline() {
    gort::run(|| {
        let (c, _s) = pair();
        let d = Instant::now() + Duration::from_millis(30);
        c.set_write_deadline(Some(d)).unwrap();
        let e = (&c).write_all(&vec![0u8; 64 << 20]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(Instant::now() >= d);
    });
}

// Go: TestAcceptTimeout
#[test]
fn accept_deadline_and_std_timeout() {
    gort::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_deadline(Some(Instant::now() + Duration::from_millis(10)))
            .unwrap();
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::TimedOut);
        let (c, _s) = pair();
        c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let t = Instant::now();
        assert_eq!(
            (&c).read(&mut [0u8; 1]).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
        assert!(t.elapsed() >= Duration::from_millis(10));
        assert!(c.set_read_timeout(Some(Duration::ZERO)).is_err());
    });
}

/// Bytes for a write that cannot fit the socket buffers of [`small_buffer_pair`].
const BIG: usize = 4 << 20;

/// A TCP pair whose send (client) and receive (server) buffers are small, so a write of
/// [`BIG`] bytes parks until the server side reads.
fn small_buffer_pair() -> (TcpStream, TcpStream) {
    let (c, s) = pair();
    c.set_send_buffer_size(16 << 10).unwrap();
    s.set_recv_buffer_size(16 << 10).unwrap();
    (c, s)
}

// Go: TestVariousDeadlines-style change while parked, for a write: a write parked on full
// buffers wakes with TimedOut when its far deadline is moved earlier (near or past).
#[test]
fn write_deadline_moved_earlier_wakes_parked_write() {
    gort::run(|| {
        for ahead in [Duration::from_millis(20), Duration::ZERO] {
            let (c, _s) = small_buffer_pair();
            let c = Arc::new(c);
            c.set_write_deadline(Some(Instant::now() + Duration::from_secs(3600)))
                .unwrap();
            let c2 = c.clone();
            let h = gort::spawn(move || (&*c2).write_all(&vec![7u8; BIG]));
            gort::time::sleep(Duration::from_millis(30));
            assert!(!h.is_finished(), "the write did not park");
            let d = Instant::now() + ahead;
            c.set_write_deadline(Some(d)).unwrap();
            let woke = wait_until(Duration::from_secs(5), || h.is_finished());
            assert!(
                woke,
                "the earlier deadline ({ahead:?}) did not wake the write"
            );
            let e = h.join().unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
            assert!(Instant::now() >= d);
        }
    });
}

// Go: TestWriteTimeoutMustNotReturn (net/timeout_test.go): a parked write whose deadline is
// cleared before it fires stays parked past the old deadline, and completes, every byte
// delivered in order, once the peer reads.
#[test]
fn write_deadline_cleared_while_parked() {
    gort::run(|| {
        let data: Arc<Vec<u8>> = Arc::new((0..BIG).map(|i| (i % 251) as u8).collect());
        for attempt in 1.. {
            let (c, s) = small_buffer_pair();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap(); // a lost wake-up fails
            let c = Arc::new(c);
            let d = Instant::now() + Duration::from_millis(200);
            c.set_write_deadline(Some(d)).unwrap();
            let (c2, data2) = (c.clone(), data.clone());
            let h = gort::spawn(move || (&*c2).write_all(&data2));
            gort::time::sleep(Duration::from_millis(20));
            c.set_write_deadline(None).unwrap();
            if Instant::now() >= d {
                // Too slow a machine to clear it in time: try again with a fresh pair.
                assert!(
                    attempt < 5,
                    "could not clear the deadline before it in 5 tries"
                );
                c.close().unwrap();
                let _ = h.join().unwrap();
                continue;
            }
            gort::time::sleep_until(d + Duration::from_millis(100));
            assert!(!h.is_finished(), "the cleared deadline fired");
            let mut got = vec![0u8; BIG];
            (&s).read_exact(&mut got).unwrap();
            h.join().unwrap().unwrap();
            assert!(got == *data, "the bytes differ");
            return;
        }
    });
}
