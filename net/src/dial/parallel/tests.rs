//! Unit tests of the Happy Eyeballs race on explicit address lists (only 127.0.0.1 and ::1
//! are assumed). A primary that hangs is a listener whose accept queue is full: the kernel
//! drops further SYNs, so a connect to it waits until its deadline.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::dial::DEFAULT_FALLBACK_DELAY;
use crate::tcp::TcpListener;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

type Hanging = (socket2::Socket, Vec<std::net::TcpStream>, SocketAddr);

/// A listener on `ip` whose accept queue is full, and the connections filling it (keep both
/// alive). Checks that a further connect really hangs before handing it out. Blocking std
/// calls: on the blocking pool when called from a coroutine.
fn hanging(ip: IpAddr) -> Hanging {
    gort_runtime::spawn_blocking(move || hanging_now(ip))
}

fn hanging_now(ip: IpAddr) -> Hanging {
    let l = socket2::Socket::new(
        socket2::Domain::for_address(SocketAddr::new(ip, 0)),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    l.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    l.listen(0).unwrap();
    let a = l.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)) {
            Ok(c) => fill.push(c),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (l, fill, a),
            Err(e) => panic!("filling the backlog of {a}: {e}"),
        }
    }
    panic!("connects to {a} never hang: the full-backlog trick does not work here");
}

/// A port on `ip` with nothing listening: bound, then released.
fn refusing(ip: IpAddr) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
    l.local_addr().unwrap()
}

fn secs(n: u64) -> Option<Instant> {
    Instant::now().checked_add(Duration::from_secs(n))
}

fn race(d: &Dialer, addrs: &[SocketAddr], deadline: Option<Instant>) -> io::Result<TcpStream> {
    d.dial_tcp_addrs("tcp", addrs, deadline, None)
}

// Go: TestAddrListPartition (behaviour): the family of the first address is primary, order
// is kept within each group, a single-family list is not split.
#[test]
fn partition_by_the_first_family() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    let (p, f) = partition(&[
        a("[::1]:1"),
        a("127.0.0.1:2"),
        a("[::2]:3"),
        a("127.0.0.3:4"),
    ])
    .unwrap();
    assert_eq!(p, [a("[::1]:1"), a("[::2]:3")]);
    assert_eq!(f, [a("127.0.0.1:2"), a("127.0.0.3:4")]);
    let (p, f) = partition(&[a("127.0.0.1:2"), a("[::1]:1")]).unwrap();
    assert_eq!((p, f), (vec![a("127.0.0.1:2")], vec![a("[::1]:1")]));
    assert!(partition(&[a("127.0.0.1:2"), a("127.0.0.3:4")]).is_none());
    assert!(partition(&[a("[::1]:1")]).is_none());
    assert!(partition(&[]).is_none());
}

/// The primary hangs, the fallback of the other family is live: the dial connects to the
/// fallback after the delay, well before the 10 s deadline.
fn falls_back(hang_ip: IpAddr, live_ip: IpAddr) {
    let (_l, _fill, hang) = hanging(hang_ip);
    let live_l = TcpListener::bind(SocketAddr::new(live_ip, 0)).unwrap();
    let live = live_l.local_addr().unwrap();
    let t0 = Instant::now();
    let s = race(&Dialer::new(), &[hang, live], secs(10)).unwrap();
    assert_eq!(s.peer_addr().unwrap(), live);
    // Behaviour bounds, not a benchmark: it waited for the delay, and not for the deadline.
    assert!(t0.elapsed() >= DEFAULT_FALLBACK_DELAY, "{:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

// Go: TestDialParallel ("primary slow, fallback fast") and TestDialerFallbackDelay (the
// fallback starts after the default 300 ms), both family orders, in a coroutine.
#[test]
fn hanging_primary_falls_back_in_a_coroutine() {
    gort_runtime::run(|| {
        falls_back(V6, V4);
        falls_back(V4, V6);
    });
}

// The same from a plain thread: the racers run on the default runtime, the caller blocks.
#[test]
fn hanging_primary_falls_back_on_a_plain_thread() {
    falls_back(V6, V4);
    falls_back(V4, V6);
}

// Go: TestDialParallel ("primary fails fast": the fallback starts at once, not after the
// delay).
#[test]
fn failed_primary_starts_the_fallback_at_once() {
    gort_runtime::run(|| {
        let live_l = TcpListener::bind(SocketAddr::new(V4, 0)).unwrap();
        let live = live_l.local_addr().unwrap();
        let d = Dialer::new().fallback_delay(Duration::from_secs(30));
        let t0 = Instant::now();
        let s = race(&d, &[refusing(V6), live], None).unwrap();
        assert_eq!(s.peer_addr().unwrap(), live);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    });
}

// Go: TestDialParallel (both fail: the primary's error, also when the fallback fails first).
#[test]
fn both_fail_with_the_primary_error() {
    gort_runtime::run(|| {
        let (r6, r4) = (refusing(V6), refusing(V4));
        for (p, f) in [(r6, r4), (r4, r6)] {
            let e = race(&Dialer::new(), &[p, f], secs(10)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            assert_eq!(
                e.to_string(),
                format!("dial tcp {p}: connect: connection refused")
            );
        }
        // The primary hangs until the 1 s deadline; the fallback is refused at 10 ms.
        let (_l, _fill, hang) = hanging(V6);
        let d = Dialer::new().fallback_delay(Duration::from_millis(10));
        let t0 = Instant::now();
        let e = race(&d, &[hang, r4], secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert_eq!(e.to_string(), format!("dial tcp {hang}: i/o timeout"));
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    });
}

// Go: TestDialerFallbackDelay with a negative delay (no fallback): the primary's deadline
// passes. A serial list still reaches a later address that works.
#[test]
fn fast_fallback_off_dials_serially() {
    gort_runtime::run(|| {
        let (_l, _fill, hang) = hanging(V6);
        let live_l = TcpListener::bind(SocketAddr::new(V4, 0)).unwrap();
        let live = live_l.local_addr().unwrap();
        let off = Dialer::new().fast_fallback(false);
        assert_eq!(off.clone().fallback_delay(Duration::ZERO).fallback(), None);
        let e = race(&off, &[hang, live], secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert_eq!(e.to_string(), format!("dial tcp {hang}: i/o timeout"));
        let s = race(&off, &[refusing(V6), live], secs(10)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), live);
        // Zero means the default delay; a delay is kept as given.
        assert_eq!(Dialer::new().fallback(), Some(DEFAULT_FALLBACK_DELAY));
        let ms = Duration::from_millis(5);
        assert_eq!(Dialer::new().fallback_delay(ms).fallback(), Some(ms));
    });
}

// The loser's cancellation: a connect parked on a hanging address wakes at once, its socket
// closed, and a cancelled racer tries nothing more.
#[test]
fn cancel_wakes_a_parked_connect() {
    gort_runtime::run(|| {
        let (_l, _fill, hang) = hanging(V4);
        let c = Arc::new(Cancel::default());
        let c2 = c.clone();
        let h = gort_runtime::go!(Dialer::new().dial_serial("tcp", &[hang], None, Some(&c2)));
        gort_runtime::time::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        c.cancel();
        let e = h.join().unwrap().unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(
            e.to_string(),
            format!("dial tcp {hang}: operation was canceled")
        );
        let e = Dialer::new()
            .dial_serial("tcp", &[hang], None, Some(&c))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("dial tcp {hang}: operation was canceled")
        );
    });
}
