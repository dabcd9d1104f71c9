//! Zero-length datagram reads (Go: internal/poll's `FD.Read` returns at once for an empty
//! buffer, which Go's TestZeroByteRead checks for streams; `ReadFrom` has no such shortcut).
use std::time::{Duration, Instant};

// `recv(&mut [])` (and `Conn::read`) returns Ok(0) at once and leaves the datagram queued;
// `recv_from(&mut [])` consumes one datagram, as Go's ReadFrom does.
#[test]
fn empty_buffer_reads() {
    gort::run(|| {
        for via_conn in [false, true] {
            let srv = gort::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let c = gort::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            c.connect(srv.local_addr().unwrap()).unwrap();
            srv.connect(c.local_addr().unwrap()).unwrap();
            // Nothing queued: must not wait (a deadline far enough to tell a wait from none).
            srv.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)))
                .unwrap();
            if !via_conn {
                assert_eq!(srv.recv(&mut []).unwrap(), 0);
            } else {
                let conn: &dyn gort::net::Conn = &srv;
                assert_eq!(conn.read(&mut []).unwrap(), 0);
            }
            c.send(b"hello").unwrap();
            c.send(b"second").unwrap();
            gort::time::sleep(Duration::from_millis(10));
            assert_eq!(srv.recv(&mut []).unwrap(), 0);
            let mut b = [0u8; 16];
            let n = srv.recv(&mut b).unwrap();
            assert_eq!(&b[..n], b"hello", "the empty read consumed a datagram");
            let (n, _) = srv.recv_from(&mut []).unwrap();
            assert_eq!(n, 0);
            srv.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))
                .unwrap();
            let e = srv.recv(&mut b).unwrap_err();
            assert!(
                gort::net::is_timeout(&e),
                "recv_from(&mut []) consumed `second`: {e}"
            );
        }
    });
}
