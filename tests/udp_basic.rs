//! UDP tests (Go: net/udpsock_test.go TestUDPZeroBytePayload, TestUDPConnSpecificMethods).
use std::io::ErrorKind;
use std::time::{Duration, Instant};

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
