//! Happy Eyeballs (RFC 6555 Fast Fallback) through the public surface. Go: net/dial_test.go
//! TestDialParallel and TestDialerFallbackDelay (behaviour only). `localhost` resolves to
//! [127.0.0.1, ::1] without the resolver, so a hanging 127.0.0.1:P next to a live [::1]:P
//! gives a primary that hangs and a fallback that works. Timing asserts are behaviour
//! bounds: "waited at least the delay" (timers never fire early) and "well before the
//! deadline".
#[path = "common/hanging.rs"]
mod hanging;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gort::net::{Dialer, TcpStream};
use hanging::*;

/// A hanging 127.0.0.1:P and an accepting [::1]:P.
fn hang4_live6() -> (Hanging, SocketAddr, u16) {
    localhost_pair(
        || {
            let h = hanging(V4, 0)?;
            let port = h.addr.port();
            Ok((h, port))
        },
        |port| accepting(V6, port),
    )
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `d` dials `localhost:port`, reaches `live` after at least `min` and within 5 s more.
fn falls_back(d: &Dialer, port: u16, live: SocketAddr, min: Duration) {
    let t0 = Instant::now();
    let c = d.dial("tcp", &format!("localhost:{port}")).unwrap();
    let took = t0.elapsed();
    assert_eq!(c.remote_addr().socket_addr(), Some(live));
    assert!(took >= min && took < min + secs(5), "{took:?}");
}

// Go: TestDialParallel ("primary slow, fallback fast") and TestDialerFallbackDelay (a zero
// delay is the default 300 ms): a 10 s dial reaches ::1 after the delay, in a coroutine.
#[test]
fn localhost_falls_back_to_ipv6() {
    let (h, live6, port) = hang4_live6();
    gort::run(move || {
        let _h = h;
        falls_back(
            &Dialer::new().timeout(secs(10)),
            port,
            live6,
            Duration::from_millis(300),
        );
        let c = gort::net::dial_timeout("tcp", &format!("localhost:{port}"), secs(10)).unwrap();
        assert_eq!(c.remote_addr().socket_addr(), Some(live6));
    });
}

// The same from a plain thread (the racers run on the default runtime; the caller blocks).
#[test]
fn localhost_falls_back_on_a_plain_thread() {
    let (_h, live6, port) = hang4_live6();
    falls_back(
        &Dialer::new().timeout(secs(10)),
        port,
        live6,
        Duration::from_millis(300),
    );
    let s = Dialer::new()
        .timeout(secs(10))
        .dial_tcp("tcp", &format!("localhost:{port}"))
        .unwrap();
    assert_eq!(s.peer_addr().unwrap(), live6);
}

// Go: TestDialerFallbackDelay: the fallback starts after the delay that was set.
#[test]
fn fallback_delay_is_kept() {
    let (h, live6, port) = hang4_live6();
    gort::run(move || {
        let _h = h;
        let d = Dialer::new().timeout(secs(10));
        falls_back(&d.clone().fallback_delay(secs(1)), port, live6, secs(1));
        let ms = Duration::from_millis(20);
        falls_back(&d.fallback_delay(ms), port, live6, ms);
    });
}

// Go: TestDialerFallbackDelay with a negative delay: without the fallback the hanging
// primary takes the whole (short) deadline.
#[test]
fn fast_fallback_off_times_out() {
    let (h, _live6, port) = hang4_live6();
    gort::run(move || {
        let _h = h;
        let t0 = Instant::now();
        let d = Dialer::new().fast_fallback(false).timeout(secs(1));
        let e = d.dial("tcp", &format!("localhost:{port}")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert_eq!(
            e.to_string(),
            format!("dial tcp 127.0.0.1:{port}: i/o timeout")
        );
        assert!(t0.elapsed() < secs(5), "{:?}", t0.elapsed());
        // tcp4 is one family: no race either.
        let d = Dialer::new().timeout(Duration::from_millis(500));
        let e = d.dial("tcp4", &format!("localhost:{port}")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    });
}

// Go: TestDialParallel (both fail: the primary's error, whichever fails first).
#[test]
fn both_fail_with_the_primary_error() {
    // A port refused on both 127.0.0.1 and ::1.
    let (l4, l6, port) = localhost_pair(
        || {
            let l = std::net::TcpListener::bind((V4, 0))?;
            let port = l.local_addr()?.port();
            Ok((l, port))
        },
        |port| std::net::TcpListener::bind((V6, port)),
    );
    drop((l4, l6));
    let (r4, r6) = (SocketAddr::new(V4, port), SocketAddr::new(V6, port));
    gort::run(move || {
        let e = gort::net::dial("tcp", &format!("localhost:{port}")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(
            e.to_string(),
            format!("dial tcp {r4}: connect: connection refused")
        );
        let e = TcpStream::connect(&[r6, r4][..]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("dial tcp {r6}: connect: connection refused")
        );
    });
}

// A mixed list given to TcpStream::connect races too: a hanging ::1 first, a live
// 127.0.0.1 second (an order `localhost` does not give).
#[test]
fn mixed_list_connect_falls_back() {
    let h = hanging(V6, 0).unwrap();
    let live4 = accepting(V4, 0).unwrap();
    gort::run(move || {
        let t0 = Instant::now();
        let s = TcpStream::connect(&[h.addr, live4][..]).unwrap();
        assert_eq!(s.peer_addr().unwrap(), live4);
        assert!(t0.elapsed() < secs(5), "{:?}", t0.elapsed());
    });
}

/// A panic in the `Control` hook reaches the caller of a raced dial, as it does in a serial
/// one (gort's own rule: the racer is the caller's dial, not a goroutine of its own).
#[test]
fn control_hook_panic_reaches_the_caller() {
    gort::run(|| {
        let d = Dialer::new().control(|_, _, _| panic!("control hook boom"));
        // `localhost` is [127.0.0.1, ::1]: the dial is raced (nothing need listen).
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            d.dial("tcp", "localhost:9").map(drop)
        }));
        let payload = r.expect_err("the hook's panic should reach the caller");
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert_eq!(msg, "control hook boom");
    });
}
