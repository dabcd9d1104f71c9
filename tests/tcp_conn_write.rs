//! `Conn::write` keeps Go's `Write` contract (Go: net/net_test.go's TestCloseWrite family and
//! the `io.Writer` rule "Write must return a non-nil error if it returns n < len(p)"): a short
//! count always comes with an error, which carries the count; std's `Write` keeps its own
//! contract (a short `Ok`, the error on the next call).
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use gort::net::Conn;

mod common;
use common::tcp_pair as pair;

/// Fills the connection (nobody reads the peer) under a 50 ms write deadline.
fn blocked_write(c: &dyn Conn) -> std::io::Error {
    let big = vec![7u8; 64 << 20];
    c.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    c.write(&big)
        .expect_err("64 MiB cannot fit in the socket buffers")
}

#[test]
fn short_write_is_an_error_with_its_count() {
    gort::run(|| {
        let (c, mut s) = pair();
        let e = blocked_write(&c);
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(gort::net::is_timeout(&e));
        let n = gort::net::written(&e);
        assert!(
            n > 0,
            "some bytes fit in the buffers before the deadline: {e}"
        );
        assert!(e.to_string().ends_with("i/o timeout"), "{e}");
        // Exactly `n` bytes went out: the peer reads them, then EOF.
        Conn::close(&c).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().all(|&b| b == 7));
    });
}

#[test]
fn std_write_on_dyn_conn_returns_the_short_count() {
    gort::run(|| {
        let (c, _s) = pair();
        let conn: Box<dyn Conn> = Box::new(c);
        let big = vec![1u8; 64 << 20];
        conn.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        let n = Write::write(&mut &*conn, &big).unwrap();
        assert!(n > 0 && n < big.len());
        // The deadline has passed: the next write that would wait fails.
        let e = Write::write(&mut &*conn, &big).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        // A full write succeeds with the whole length; an empty one with 0.
        conn.set_write_deadline(None).unwrap();
        assert_eq!(Conn::write(&*conn, &[]).unwrap(), 0);
    });
}

#[test]
fn whole_writes_return_the_length() {
    gort::run(|| {
        let (c, mut s) = pair();
        let conn: &dyn Conn = &c;
        assert_eq!(conn.write(b"hello").unwrap(), 5);
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
        // A write error with nothing written carries no count.
        Conn::close(&c).unwrap();
        let e = conn.write(b"x").unwrap_err();
        assert!(gort::net::is_closed_error(&e));
        assert_eq!(gort::net::written(&e), 0);
    });
}
