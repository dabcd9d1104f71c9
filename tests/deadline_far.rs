//! Far-future deadlines and huge timeouts never fire (gort-specific: a deadline past ~292
//! years from the runtime's epoch once overflowed a signed nanosecond count and read as
//! expired, so every operation timed out at once). Go clamps such deadlines the same way
//! (internal/poll's `setDeadlineImpl`).
use std::io::{Read, Write};
use std::time::{Duration, Instant};

mod common;
use common::tcp_pair as pair;

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// `c` must wait for the 3 bytes that a helper coroutine writes to `s` 30 ms later, not
/// time out: whatever deadline `c` carries is too far away to matter.
fn read_waits_for_data(c: &gort::net::TcpStream, s: gort::net::TcpStream) {
    let w = gort::go!({
        gort::time::sleep(Duration::from_millis(30));
        (&s).write_all(b"abc").unwrap();
        s
    });
    let mut b = [0u8; 8];
    let n = (&*c).read(&mut b).expect("a far deadline must not fire");
    assert_eq!(&b[..n], b"abc");
    drop(w.join());
}

#[test]
fn far_deadlines_do_not_fire() {
    gort::run(|| {
        for years in [300, 1000, 100_000] {
            let (c, s) = pair();
            c.set_read_deadline(Some(Instant::now() + YEAR * years))
                .unwrap();
            read_waits_for_data(&c, s);
        }
        let (c, s) = pair();
        c.set_read_timeout(Some(Duration::from_secs(u64::MAX / 2)))
            .unwrap();
        read_waits_for_data(&c, s);
        // A far write deadline on a connection that can write at once.
        let (c, mut s) = pair();
        c.set_write_deadline(Some(Instant::now() + YEAR * 1000))
            .unwrap();
        (&c).write_all(b"xyz").unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"xyz");
    });
}

#[test]
fn huge_dial_timeouts_connect() {
    gort::run(|| {
        let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        for t in [YEAR * 400, Duration::from_secs(1 << 40)] {
            gort::net::TcpStream::connect_timeout(&a, t).expect("connect_timeout");
            gort::net::dial_timeout("tcp", &a.to_string(), t).expect("dial_timeout");
        }
    });
}

// Outside coroutines the same deadline blocks the thread (and must not fire either).
#[test]
fn far_deadline_on_a_plain_thread() {
    let (c, s) = pair();
    c.set_read_timeout(Some(Duration::from_secs(u64::MAX / 2)))
        .unwrap();
    let w = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        (&s).write_all(b"abc").unwrap();
        s
    });
    let mut b = [0u8; 8];
    let n = (&c).read(&mut b).expect("a far deadline must not fire");
    assert_eq!(&b[..n], b"abc");
    drop(w.join());
}
