//! `Dialer::dial_context` (Go's `Dialer.DialContext`). Behaviour of Go's net/dial_test.go
//! TestDialCancel (a cancel interrupts a connect that would hang, with "operation was
//! canceled") and TestCancelAfterDial (a cancel after the dial leaves the connection
//! working); the context deadline mapping to "i/o timeout" is Go's `mapErr`. A connect
//! hangs against a listener whose accept queue is full (tests/common/hanging.rs). Each
//! dialer also has a long timeout, so that a cancel that did not work fails the test with the
//! wrong error instead of hanging it.
#[path = "common/hanging.rs"]
mod hanging;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use gort::context::{self, CancelFunc};
use gort::net::{Dialer, TcpListener};
use hanging::*;

/// A dialer whose own timeout is only a backstop.
fn dialer() -> Dialer {
    Dialer::new().timeout(Duration::from_secs(30))
}

/// Cancels `cancel` after `ms` milliseconds, from another coroutine.
fn cancel_after(cancel: CancelFunc, ms: u64) {
    gort::spawn(move || {
        gort::time::sleep(Duration::from_millis(ms));
        cancel.cancel();
    });
}

/// A listener whose one connection echoes `n` bytes; the join gives them back. In a coroutine.
fn echo_peer(n: usize) -> (SocketAddr, gort::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let peer = gort::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut b = vec![0u8; n];
        c.read_exact(&mut b).unwrap();
        c.write_all(&b).unwrap();
        b
    });
    (addr, peer)
}

/// Dials `addr` under `ctx` and checks that the dial was cancelled.
fn dial_is_canceled(ctx: &context::Context, addr: SocketAddr) {
    let e = dialer()
        .dial_context(ctx, "tcp", &addr.to_string())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
    assert_eq!(
        e.to_string(),
        format!("dial tcp {addr}: operation was canceled")
    );
}

#[test]
fn background_context_dials_like_dial() {
    gort::run(|| {
        let (addr, peer) = echo_peer(2);
        let mut c = dialer()
            .dial_context(&context::background(), "tcp", &addr.to_string())
            .unwrap();
        c.write_all(b"hi").unwrap();
        assert_eq!(peer.join().unwrap(), b"hi");
    });
}

#[test]
fn done_context_fails_before_dialing() {
    gort::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (ctx, cancel) = context::with_cancel(&context::background());
        cancel.cancel();
        dial_is_canceled(&ctx, addr);
        // Nothing reached the listener.
        l.set_deadline(Some(std::time::Instant::now())).unwrap();
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::TimedOut);
        // Unix and UDP dials too, and a name that needs a lookup.
        for (net, a) in [
            ("udp", addr.to_string()),
            ("unix", "/nonexistent/gort".into()),
            ("tcp", "gort-test.invalid:80".into()),
        ] {
            let e = dialer().dial_context(&ctx, net, &a).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Interrupted, "{net}: {e}");
            let want = match net {
                "tcp" => "dial tcp: lookup gort-test.invalid: operation was canceled".into(),
                _ => format!("dial {net} {a}: operation was canceled"),
            };
            assert_eq!(e.to_string(), want);
        }
    });
}

#[test]
fn cancel_interrupts_a_hanging_connect() {
    let h = hanging(V4, 0).unwrap();
    let addr = h.addr;
    gort::run(move || {
        let (ctx, cancel) = context::with_cancel(&context::background());
        cancel_after(cancel, 100);
        dial_is_canceled(&ctx, addr);
    });
    drop(h);
}

/// A plain thread blocks in the dial, and a cancel from another thread frees it.
#[test]
fn cancel_interrupts_a_plain_thread_dial() {
    let h = hanging(V4, 0).unwrap();
    let (ctx, cancel) = context::with_cancel(&context::background());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        cancel.cancel();
    });
    let e = dialer()
        .dial_context(&ctx, "tcp", &h.addr.to_string())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
    t.join().unwrap();
}

#[test]
fn context_deadline_times_out_a_hanging_connect() {
    let h = hanging(V4, 0).unwrap();
    let addr = h.addr;
    gort::run(move || {
        let (ctx, _cancel) =
            context::with_timeout(&context::background(), Duration::from_millis(100));
        let e = dialer()
            .dial_context(&ctx, "tcp", &addr.to_string())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert_eq!(e.to_string(), format!("dial tcp {addr}: i/o timeout"));
    });
}

/// `localhost` gives 127.0.0.1 and ::1, both hanging here: a cancel after the fallback
/// started (300 ms) stops both racers.
#[test]
fn cancel_stops_both_happy_eyeballs_racers() {
    let (h4, h6, port) = localhost_pair(
        || {
            let h = hanging(V4, 0)?;
            let port = h.addr.port();
            Ok((h, port))
        },
        |port| hanging(V6, port),
    );
    gort::run(move || {
        let (ctx, cancel) = context::with_cancel(&context::background());
        cancel_after(cancel, 500);
        let e = dialer()
            .dial_context(&ctx, "tcp", &format!("localhost:{port}"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
        assert!(e.to_string().ends_with("operation was canceled"), "{e}");
    });
    drop((h4, h6));
}

/// Cancelling after the dial returned leaves the connection alone (Go's TestCancelAfterDial).
#[test]
fn cancel_after_the_dial_leaves_the_connection_working() {
    gort::run(|| {
        let (addr, peer) = echo_peer(1);
        let (ctx, cancel) = context::with_cancel(&context::background());
        let mut c = dialer()
            .dial_context(&ctx, "tcp", &addr.to_string())
            .unwrap();
        cancel.cancel();
        // Let an after_func that raced the return run, if one did.
        gort::time::sleep(Duration::from_millis(20));
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        peer.join().unwrap();
    });
}
