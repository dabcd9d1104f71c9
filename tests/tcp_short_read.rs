//! The short-read shortcut of TCP streams (`gort::io::Fd::new_tcp`): after a read that
//! returned fewer bytes than asked, the next read waits for a readiness edge instead of first
//! making a syscall that would fail with `EAGAIN`. These tests pin down the cases where a
//! short read does *not* mean "nothing more to read" and no new edge follows: end of input
//! or a reset that arrived with the data, and TCP urgent data (a read stops at the mark).
//! Each reader has a 10 s read timeout, so a lost wake-up fails with `TimedOut` instead of
//! hanging the suite. The peer is a std socket (it needs `MSG_OOB` and a reset on demand).
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use gort::net::{TcpListener, TcpStream};

const GUARD: Duration = Duration::from_secs(10);

/// (std peer, gort reader on the accepting side, with the guard timeout).
fn pair() -> (StdStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = StdStream::connect(l.local_addr().unwrap()).unwrap();
    peer.set_nodelay(true).unwrap();
    let (r, _) = l.accept().unwrap();
    r.set_read_timeout(Some(GUARD)).unwrap();
    (peer, r)
}

/// Reads once, expecting exactly `want`.
fn read_exact_short(r: &mut TcpStream, want: &[u8]) {
    let mut buf = [0u8; 64];
    let n = r.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], want);
}

/// Reads until EOF (`Ok(())`) or an error, returning the bytes read before it.
fn read_to_end_or_error(r: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

// Go: TestCloseRead-style half close (net/net_test.go): bytes sent just before the FIN are
// read, then EOF, whether or not the reader's worker saw the event before the read.
#[test]
fn eof_right_after_data() {
    for settle in [false, true] {
        gort::run(move || {
            let (mut peer, mut r) = pair();
            peer.write_all(b"a").unwrap();
            read_exact_short(&mut r, b"a"); // short: the next read skips its first syscall
            peer.write_all(b"hello").unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            if settle {
                gort::time::sleep(Duration::from_millis(30));
            }
            read_exact_short(&mut r, b"hello");
            assert_eq!(r.read(&mut [0u8; 64]).unwrap(), 0, "EOF after the data");
        });
    }
}

// An EOF that arrives after a short read, while the reader is parked, wakes it.
#[test]
fn eof_while_parked_after_short_read() {
    gort::run(|| {
        let (mut peer, mut r) = pair();
        peer.write_all(b"a").unwrap();
        read_exact_short(&mut r, b"a");
        let h = gort::spawn(move || {
            gort::time::sleep(Duration::from_millis(30));
            peer.shutdown(Shutdown::Write).unwrap();
            peer
        });
        assert_eq!(r.read(&mut [0u8; 64]).unwrap(), 0);
        drop(h.join().unwrap());
    });
}

// A reset right behind the data (peer closes with SO_LINGER 0, so no FIN precedes the RST):
// the data is read first, then the reset is reported as `ConnectionReset`, never as EOF and
// never as a timeout. Linux keeps the received bytes after an RST and reports the reset
// (`sk_err`) once, on the first read that finds the queue empty; an `Ok(0)` before that
// error would mean the reset was swallowed. gort-specific (Go's net tests have no test of a
// reset behind data; Go reports it as ECONNRESET the same way).
#[test]
fn reset_right_after_data() {
    for settle in [false, true] {
        gort::run(move || {
            let (mut peer, mut r) = pair();
            peer.write_all(b"a").unwrap();
            read_exact_short(&mut r, b"a");
            peer.write_all(b"bye").unwrap();
            socket2::SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(peer); // RST
            if settle {
                gort::time::sleep(Duration::from_millis(30));
            }
            let (got, end) = read_to_end_or_error(&mut r);
            let e = end.expect_err(&format!("EOF instead of a reset after {got:?}"));
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
            assert!(b"bye".starts_with(&got), "got {got:?}");
        });
    }
}

// TCP urgent data: a read stops short at the urgent mark with bytes behind it. The urgent
// byte itself is not in the stream (no SO_OOBINLINE); everything else must arrive.
#[test]
fn urgent_data_does_not_stall_reads() {
    gort::run(|| {
        let (mut peer, mut r) = pair();
        peer.write_all(b"a").unwrap();
        read_exact_short(&mut r, b"a");
        peer.write_all(b"bc").unwrap();
        // SAFETY: send(2) on a valid connected socket with a valid one-byte buffer.
        let sent = unsafe {
            libc::send(
                peer.as_raw_fd(),
                b"!".as_ptr().cast(),
                1,
                libc::MSG_OOB | libc::MSG_NOSIGNAL,
            )
        };
        assert_eq!(sent, 1);
        peer.write_all(b"de").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let (got, end) = read_to_end_or_error(&mut r);
        end.unwrap_or_else(|e| panic!("read failed after {got:?}: {e}"));
        assert_eq!(got, b"bcde");
    });
}

// Go: TestReadTimeoutUnblocksRead's twin: bytes already in the kernel are returned after the
// deadline passed, also right after a short read; the read after them times out.
#[test]
fn past_deadline_after_short_read_still_returns_buffered_bytes() {
    for settle in [false, true] {
        gort::run(move || {
            let (mut peer, mut r) = pair();
            peer.write_all(b"a").unwrap();
            read_exact_short(&mut r, b"a");
            peer.write_all(b"bc").unwrap();
            if settle {
                gort::time::sleep(Duration::from_millis(30));
            }
            // The guard timeout re-arms the deadline at each read: replace it by the deadline.
            r.set_read_timeout(None).unwrap();
            r.set_read_deadline(Some(Instant::now() - Duration::from_millis(1)))
                .unwrap();
            read_exact_short(&mut r, b"bc");
            let e = r.read(&mut [0u8; 64]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
            drop(peer);
        });
    }
}

// Many short reads in a row, with the data arriving while the reader is parked each time,
// and from a plain thread as well as a coroutine: every byte arrives, in order.
#[test]
fn short_reads_then_parked_arrivals() {
    gort::run(|| {
        let (mut peer, mut r) = pair();
        let h = gort::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let feeder = std::thread::spawn(move || {
            for i in 0..50u8 {
                peer.write_all(&[i, i]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let got = h.join().unwrap();
        feeder.join().unwrap();
        let want: Vec<u8> = (0..50u8).flat_map(|i| [i, i]).collect();
        assert_eq!(got, want);
    });
}
