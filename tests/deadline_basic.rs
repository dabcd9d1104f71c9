//! Deadline tests (Go: net/timeout_test.go behaviours). Only "not earlier than the deadline"
//! is asserted about time.
#![allow(clippy::needless_borrow)] // `(&s).read(..)` spells out the shared-reference Read impl.
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::net::TcpListener;

mod common;
use common::tcp_pair as pair;

// Go: TestReadTimeout (past deadline fails at once; message and kind)
#[test]
fn past_deadline_fails_at_once() {
    gort::run(|| {
        let (c, _s) = pair();
        c.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
            .unwrap();
        let e = (&c).read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let (l, r) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
        assert_eq!(e.to_string(), format!("read tcp {l}->{r}: i/o timeout"));
    });
}

// Go: TestReadTimeoutFluctuation-style future deadline (never earlier)
#[test]
fn future_deadline_not_early() {
    gort::run(|| {
        let (c, _s) = pair();
        let d = Instant::now() + Duration::from_millis(30);
        c.set_read_deadline(Some(d)).unwrap();
        let e = (&c).read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(Instant::now() >= d);
    });
}

// Buffered data is returned after the deadline; only a wait fails.
#[test]
fn buffered_data_after_deadline() {
    gort::run(|| {
        let (c, s) = pair();
        (&s).write_all(b"abc").unwrap();
        gort::time::sleep(Duration::from_millis(20));
        c.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
            .unwrap();
        let mut b = [0u8; 8];
        assert_eq!((&c).read(&mut b).unwrap(), 3);
        assert_eq!((&c).read(&mut b).unwrap_err().kind(), ErrorKind::TimedOut);
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
