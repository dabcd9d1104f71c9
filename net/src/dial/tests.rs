use super::*;
use crate::addr::SLOW_TEST_HOST;
use crate::tcp::TcpListener;

/// A loopback port with nothing listening: bound, then released.
fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

// Go: TestDialTimeout behaviours (the timeout covers the lookup): a lookup that takes 2 s
// fails a 50 ms dial with `lookup HOST: i/o timeout`; `deadline` and UDP alike.
#[test]
fn timeout_covers_the_lookup() {
    gort_runtime::run(|| {
        let addr = format!("{SLOW_TEST_HOST}:80");
        let ms50 = Duration::from_millis(50);
        type DialFn<'a> = Box<dyn Fn() -> io::Result<()> + 'a>;
        let dials: [(&str, DialFn<'_>); 4] = [
            (
                "tcp",
                Box::new(|| dial_timeout("tcp", &addr, ms50).map(drop)),
            ),
            (
                "udp",
                Box::new(|| dial_timeout("udp", &addr, ms50).map(drop)),
            ),
            (
                "tcp",
                Box::new(|| {
                    let d = Dialer::new().deadline(Instant::now() + ms50);
                    d.dial_tcp("tcp", &addr).map(drop)
                }),
            ),
            (
                "tcp4",
                Box::new(|| Dialer::new().timeout(ms50).dial("tcp4", &addr).map(drop)),
            ),
        ];
        for (net, f) in dials {
            let t0 = Instant::now();
            let e = f().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
            assert_eq!(
                e.to_string(),
                format!("dial {net}: lookup {SLOW_TEST_HOST}: i/o timeout")
            );
            // A behaviour bound (the lookup takes 2 s), not a benchmark.
            assert!(
                t0.elapsed() < Duration::from_millis(1500),
                "waited for the lookup"
            );
        }
    });
}

// Go: dialSerial's contract ("the first successful connection, or the first error"), as
// TestDialParallel checks it for the primaries: addresses are tried in order; the first
// that accepts wins; if none does, the FIRST error is returned.
#[test]
fn tries_addresses_in_order_and_returns_the_first_error() {
    gort_runtime::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let live = l.local_addr().unwrap();
        let (r1, r2) = (refusing_addr(), "127.0.0.1:1".parse().unwrap());
        for deadline in [None, Instant::now().checked_add(Duration::from_secs(30))] {
            let d = Dialer::new();
            let s = d
                .dial_tcp_addrs("tcp", &[r1, live], deadline, None)
                .unwrap();
            assert_eq!(s.peer_addr().unwrap(), live);
            // The public surface: TcpStream::connect with a slice.
            let s = TcpStream::connect(&[r1, live][..]).unwrap();
            assert_eq!(s.peer_addr().unwrap(), live);

            let e = d
                .dial_tcp_addrs("tcp", &[r1, r2], deadline, None)
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            assert_eq!(
                e.to_string(),
                format!("dial tcp {r1}: connect: connection refused")
            );
            let e = d
                .dial_tcp_addrs("tcp", &[r2, r1], deadline, None)
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("dial tcp {r2}: connect: connection refused")
            );
        }
        // Of two live addresses the first wins.
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let live2 = l2.local_addr().unwrap();
        let s = Dialer::new()
            .dial_tcp_addrs("tcp", &[live2, live], None, None)
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), live2);
        // With the deadline already past no address is tried: the error is a timeout.
        let past = Some(Instant::now());
        let e = Dialer::new()
            .dial_tcp_addrs("tcp", &[r1, live], past, None)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    });
}

// Go: dialSerial applies to UDP too (behaviour): the first address whose socket connects
// wins, else the first error. A UDP connect to the limited broadcast address without
// SO_BROADCAST fails at once and sends nothing (EACCES; ENETUNREACH on a host with no
// route but loopback).
#[test]
fn udp_tries_addresses_in_order() {
    gort_runtime::run(|| {
        let l = UdpSocket::bind("127.0.0.1:0").unwrap();
        let live = l.local_addr().unwrap();
        let (b9, b10) = (
            "255.255.255.255:9".parse().unwrap(),
            "255.255.255.255:10".parse().unwrap(),
        );
        let d = Dialer::new();
        let s = d.dial_udp_addrs("udp", &[b9, live], None).unwrap();
        assert_eq!(s.peer_addr().unwrap(), live);
        s.send(b"hi").unwrap();
        let mut buf = [0; 8];
        assert_eq!(l.recv_from(&mut buf).unwrap(), (2, s.local_addr().unwrap()));

        let e = d.dial_udp_addrs("udp", &[b9, b10], None).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("dial udp 255.255.255.255:9: connect: "),
            "{text}"
        );
        let errno = crate::raw_os_error(&e);
        assert!(
            matches!(errno, Some(libc::EACCES | libc::ENETUNREACH)),
            "{text}"
        );
        // With the deadline passed (the lookup used it up) nothing is tried, as in Go.
        let e = d
            .dial_udp_addrs("udp", &[live], Some(Instant::now()))
            .unwrap_err();
        assert_eq!(e.to_string(), format!("dial udp {live}: i/o timeout"));

        // The public surface: `localhost` gives [127.0.0.1, ::1]; a control hook that
        // rejects the IPv4 socket makes `dial` go on to ::1.
        let l6 = UdpSocket::bind("[::1]:0").unwrap();
        let port = l6.local_addr().unwrap().port();
        let d = Dialer::new().control(|_, addr, _| match addr.starts_with("127.") {
            true => Err(io::Error::new(io::ErrorKind::PermissionDenied, "not v4")),
            false => Ok(()),
        });
        let c = d.dial("udp", &format!("localhost:{port}")).unwrap();
        assert_eq!(c.remote_addr(), Addr::Udp(l6.local_addr().unwrap()));
        let e = d.dial("udp4", &format!("localhost:{port}")).unwrap_err();
        assert_eq!(e.to_string(), format!("dial udp4 127.0.0.1:{port}: not v4"));
    });
}

// A cancel while the name lookup runs stops the wait for it (Go's DialContext hands the
// context to the resolver). The slow lookup would end after 2 s with "no such host".
#[test]
fn cancel_stops_waiting_for_the_lookup() {
    gort_runtime::run(|| {
        let bg = gort_runtime::context::background();
        let (ctx, cancel) = gort_runtime::context::with_cancel(&bg);
        gort_runtime::spawn(move || {
            gort_runtime::time::sleep(Duration::from_millis(50));
            cancel.cancel();
        });
        let e = Dialer::new()
            .dial_context(&ctx, "tcp", &format!("{SLOW_TEST_HOST}:80"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "{e}");
        assert_eq!(
            e.to_string(),
            format!("dial tcp: lookup {SLOW_TEST_HOST}: operation was canceled")
        );
    });
}

// Go's filterAddrList (TestDialerLocalAddr's pairs of local and remote families): a local
// address keeps only remote addresses of its family; none left is an error, not a bind
// failure.
#[test]
fn local_addr_keeps_its_family() {
    gort_runtime::run(|| {
        let Ok(l6) = TcpListener::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let port = l6.local_addr().unwrap().port();
        let e = Dialer::new()
            .local_addr("127.0.0.1:0".parse().unwrap())
            .dial("tcp", &format!("[::1]:{port}"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(
            e.to_string(),
            "dial tcp: address 127.0.0.1:0: no suitable address found"
        );
        // localhost is [127.0.0.1, ::1]: an IPv6 local address dials ::1 only.
        let c = Dialer::new()
            .local_addr("[::1]:0".parse().unwrap())
            .dial_tcp("tcp", &format!("localhost:{port}"))
            .unwrap();
        assert!(c.peer_addr().unwrap().is_ipv6());
    });
}
