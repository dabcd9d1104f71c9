//! UDP tests (Go: net/udpsock_test.go TestUDPZeroBytePayload, TestUDPConnSpecificMethods).
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gort::net::{Dialer, ListenConfig, PacketSocket, UdpSocket};
use socket2::Type;

mod common;

// Go: TestUDPZeroBytePayload: an empty datagram is delivered and is not EOF.
#[test]
fn send_recv_and_empty_datagram() {
    gort::run(|| {
        let a = gort::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = gort::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let ba = b.local_addr().unwrap();
        a.send_to(b"", ba).unwrap();
        a.send_to(b"data", ba).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((n, from), (0, a.local_addr().unwrap()));
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"data");
        // Parked receive wakes on deadline.
        b.set_read_deadline(Some(Instant::now() + Duration::from_millis(10)))
            .unwrap();
        assert_eq!(
            b.recv_from(&mut buf).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
    });
}

// Connected UDP through the Go-style dial/Conn surface.
#[test]
fn dial_udp_conn() {
    gort::run(|| {
        let srv = gort::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = gort::net::dial("udp", &srv.local_addr().unwrap().to_string()).unwrap();
        c.write(b"hi").unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = srv.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        srv.send_to(b"yo", from).unwrap();
        assert_eq!(c.read(&mut buf).unwrap(), 2);
    });
}

// Go: TestCloseUnblocksReadUDP (net/net_test.go): closing the socket from another coroutine
// wakes a receive parked on it with "use of closed network connection".
#[test]
fn close_wakes_parked_recv_from() {
    gort::run(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = common::close_while_parked(s, |s| s.recv_from(&mut [0u8; 16]), UdpSocket::close);
        assert!(gort::net::is_closed_error(&e), "{e}");
    });
}

// gort-specific (net/src/lib.rs invariant; Go's sockets are born SOCK_NONBLOCK|SOCK_CLOEXEC
// too, untested there): a listening and a dialed UDP socket are non-blocking and
// close-on-exec from creation (checked in the Control hook) and once set up.
#[test]
fn fds_nonblocking_cloexec() {
    gort::run(|| {
        let (hooked, check) = common::flag_checking_control();
        let lc = ListenConfig::new().control(check.clone());
        let Ok(PacketSocket::Udp(u)) = lc.listen_packet("udp", "127.0.0.1:0") else {
            panic!("listen_packet udp failed");
        };
        let ua = u.local_addr().unwrap();
        let d = Dialer::new()
            .control(check)
            .dial("udp", &ua.to_string())
            .unwrap();
        assert_eq!(hooked.load(Ordering::SeqCst), 2);
        let is_ua = |a: &socket2::SockAddr| a.as_socket() == Some(ua);
        let bound = common::socket_fds(Type::DGRAM, false, is_ua);
        let dialed = common::socket_fds(Type::DGRAM, true, is_ua);
        assert_eq!((bound.len(), dialed.len()), (1, 1), "{bound:?} {dialed:?}");
        common::assert_nonblocking_cloexec(bound[0], "bound UDP socket");
        common::assert_nonblocking_cloexec(dialed[0], "dialed UDP socket");
        drop(d);
    });
}
