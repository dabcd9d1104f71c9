//! TCP behaviour tests (each names the Go test whose behaviour it mirrors).
#![allow(clippy::needless_borrow)] // `(&s).read(..)` spells out the shared-reference Read impl.
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gort::net::{self, Conn, Dialer, ListenConfig, TcpListener, TcpStream};

mod common;
use common::tcp_pair as pair;

// Go: TestCloseUnblocksRead (net/net_test.go)
#[test]
fn close_wakes_parked_read() {
    gort::run(|| {
        let (c, _s) = pair();
        let c = Arc::new(c);
        let c2 = c.clone();
        let h = gort::spawn(move || (&*c2).read(&mut [0u8; 8]));
        gort::time::sleep(Duration::from_millis(20));
        c.close().unwrap();
        let e = h.join().unwrap().unwrap_err();
        assert!(net::is_closed_error(&e), "{e}");
        assert!(
            e.to_string().contains("use of closed network connection"),
            "{e}"
        );
        // Double close is an error, not a crash.
        assert!(net::is_closed_error(&c.close().unwrap_err()));
    });
}

// Go: TestCloseWrite-style blocked writer (net/net_test.go TestCloseUnblocksWrite behaviour)
#[test]
fn close_wakes_parked_write() {
    gort::run(|| {
        let (c, _s) = pair();
        c.set_send_buffer_size(4096).unwrap();
        let c = Arc::new(c);
        let c2 = c.clone();
        let h = gort::spawn(move || (&*c2).write_all(&vec![7u8; 16 << 20]));
        gort::time::sleep(Duration::from_millis(50));
        c.close().unwrap();
        let e = h.join().unwrap().unwrap_err();
        assert!(net::is_closed_error(&e), "{e}");
    });
}

// Go: TestAcceptIgnoreAbortedConnRequest / listener close unblocks Accept (TestCloseListener)
#[test]
fn close_wakes_parked_accepts_many() {
    gort::run(|| {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                gort::spawn(move || l.accept().map(|_| ()))
            })
            .collect();
        // Four connections are accepted by four of the eight acceptors.
        let conns: Vec<_> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        gort::time::sleep(Duration::from_millis(50));
        l.close().unwrap();
        let res: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(res.iter().filter(|r| r.is_ok()).count(), 4);
        for r in res.iter().filter_map(|r| r.as_ref().err()) {
            assert!(net::is_closed_error(r), "{r}");
        }
        drop(conns);
    });
}

// Go: TestReadEOF-ish (net/net_test.go TestCloseRead) and reset detection
#[test]
fn eof_versus_reset() {
    gort::run(|| {
        let (c, s) = pair();
        drop(s);
        assert_eq!((&c).read(&mut [0u8; 8]).unwrap(), 0);
        let (c, s) = pair();
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        let e = (&c).read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    });
}

// Go: TestCloseWrite (net/net_test.go)
#[test]
fn half_close() {
    gort::run(|| {
        let (c, s) = pair();
        (&c).write_all(b"req").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"req");
        (&s).write_all(b"resp").unwrap();
        drop(s);
        let mut back = Vec::new();
        (&c).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"resp");
    });
}

// Reader and writer coroutines share one connection through `&TcpStream`.
#[test]
fn reader_and_writer_on_one_conn() {
    gort::run(|| {
        let (c, s) = pair();
        let c = Arc::new(c);
        let echo = gort::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match (&s).read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => (&s).write_all(&buf[..n]).unwrap(),
                }
            }
        });
        let w = c.clone();
        let total = 1 << 20;
        let writer = gort::spawn(move || {
            (&*w).write_all(&vec![3u8; total]).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = 0;
        let mut buf = [0u8; 8192];
        loop {
            let n = (&*c).read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 3));
            got += n;
        }
        writer.join().unwrap();
        echo.join().unwrap();
        assert_eq!(got, total);
    });
}

// Go: TestWriteToClosedPeer-style (EPIPE, no SIGPIPE: the process would die otherwise)
#[test]
fn write_to_closed_peer_no_sigpipe() {
    // SAFETY: restoring SIGPIPE's default action so a raised SIGPIPE would kill the test.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    gort::run(|| {
        let (c, s) = pair();
        drop(s);
        gort::time::sleep(Duration::from_millis(20));
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = (&c).write_all(&[1u8; 65536]) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("write to closed peer must fail");
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    });
}

// Zero-length operations return at once.
#[test]
fn zero_length_ops() {
    gort::run(|| {
        let (c, _s) = pair();
        assert_eq!((&c).read(&mut []).unwrap(), 0);
        assert_eq!((&c).write(&[]).unwrap(), 0);
    });
}

// Same types from plain threads (they block the thread).
#[test]
fn plain_threads() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    t.join().unwrap();
}

// Go: TestIPv6LinkLocalUnicastTCP-lite: ::1 works (skips without IPv6)
#[test]
fn ipv6_loopback() {
    gort::run(|| {
        let Ok(l) = net::listen("tcp6", "[::1]:0") else {
            eprintln!("no IPv6; skipping");
            return;
        };
        let a = l.addr().to_string();
        let c = net::dial("tcp", &a).unwrap();
        let s = l.accept().unwrap();
        Conn::write(&*c, b"v6").unwrap();
        let mut b = [0u8; 2];
        (&*s).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"v6");
    });
}

// Go: TestDualStackTCPListener-lite: a wildcard listen on ":0" accepts IPv4 (and IPv6).
#[test]
fn wildcard_dual_stack() {
    gort::run(|| {
        let l = net::listen("tcp", ":0").unwrap();
        let port = l.addr().socket_addr().unwrap().port();
        assert_ne!(port, 0);
        let c = net::dial("tcp4", &format!("127.0.0.1:{port}")).unwrap();
        let _s = l.accept().unwrap();
        drop(c);
        if let Ok(c6) = net::dial("tcp6", &format!("[::1]:{port}")) {
            let _s = l.accept().unwrap();
            drop(c6);
        }
    });
}

// gort-specific (net/src/lib.rs invariant; Go's sockets are born SOCK_NONBLOCK|SOCK_CLOEXEC
// too, untested there): listening and dialed sockets are non-blocking and close-on-exec from
// creation (checked in the Control hooks, before gort registers them), and so are the
// listener and the accepted, dialed and try_clone'd streams once set up.
#[test]
fn fds_nonblocking_cloexec() {
    gort::run(|| {
        let (hooked, check) = common::flag_checking_control();
        let l = ListenConfig::new()
            .control(check.clone())
            .listen("tcp", "127.0.0.1:0")
            .unwrap();
        let a = l.addr().to_string();
        let d = Dialer::new().control(check).dial_tcp("tcp", &a).unwrap();
        assert_eq!(hooked.load(Ordering::SeqCst), 2);
        drop((d, l));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let c2 = c.try_clone().unwrap();
        let fd = |r: socket2::SockRef<'_>| Ok(r.as_raw_fd());
        let fds = [
            ("listener", l.with_socket(fd).unwrap()),
            ("dialed", c.with_socket(fd).unwrap()),
            ("accepted", s.with_socket(fd).unwrap()),
            ("try_clone'd", c2.with_socket(fd).unwrap()),
        ];
        for (what, fd) in fds {
            common::assert_nonblocking_cloexec(fd, what);
        }
        assert_ne!(fds[1].1, fds[3].1, "try_clone shares the fd");
    });
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// No fd leak across 10k connect/accept/close cycles.
#[test]
fn no_fd_leak_10k() {
    gort::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let before = count_fds();
        for _ in 0..10_000 {
            let c = TcpStream::connect(addr).unwrap();
            let (s, _) = l.accept().unwrap();
            s.set_linger(Some(Duration::ZERO)).unwrap(); // avoid TIME_WAIT exhaustion
            drop(s);
            drop(c);
        }
        let after = count_fds();
        assert!(after <= before + 8, "fds before {before}, after {after}");
    });
}
