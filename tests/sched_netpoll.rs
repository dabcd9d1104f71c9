//! Netpoll wake-ups over pipes and socketpairs (TCP arrives with gort-net).
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::io::Fd;
use gort::runtime;

fn socketpair() -> (Fd, Fd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array for socketpair to fill.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: socketpair succeeded; we own both fds.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (Fd::new(a).unwrap(), Fd::new(b).unwrap())
}

/// Many coroutines each parked reading their own pipe, woken in random order.
#[test]
fn many_readers_each_woken_once() {
    let rt = runtime::Builder::new().workers(2).build().unwrap();
    rt.run(|| {
        let n = 500;
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for i in 0..n {
            let (r, w) = Fd::pipe().unwrap();
            writers.push(w);
            readers.push(gort::spawn(move || {
                let mut b = [0u8; 4];
                (&r).read_exact(&mut b).unwrap();
                assert_eq!(u32::from_le_bytes(b), i as u32);
                let mut rest = [0u8; 1];
                // EOF once the writer is closed.
                assert_eq!(r.read(&mut rest).unwrap(), 0);
            }));
        }
        // Let them all park.
        gort::time::sleep(Duration::from_millis(20));
        for (i, w) in writers.iter().enumerate().rev() {
            (&*w).write_all(&(i as u32).to_le_bytes()).unwrap();
        }
        drop(writers);
        for h in readers {
            h.join().unwrap();
        }
    });
}

/// Go: TestCloseUnblocksRead (os/net): closing an fd wakes its parked reader with an error.
#[test]
fn close_wakes_parked_reader_and_writer() {
    gort::run(|| {
        let (a, _b) = socketpair();
        let a = Arc::new(a);
        let a2 = a.clone();
        let reader = gort::spawn(move || {
            let mut buf = [0u8; 8];
            a2.read(&mut buf)
        });
        // Fill the send buffer so a writer parks too.
        let a3 = a.clone();
        let writer = gort::spawn(move || {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = a3.write(&chunk) {
                    return e;
                }
            }
        });
        gort::time::sleep(Duration::from_millis(30));
        a.close().unwrap();
        let e = reader.join().unwrap().unwrap_err();
        assert!(gort::netpoll::is_closed_error(&e), "{e}");
        assert_eq!(e.to_string(), "use of closed network connection");
        let e = writer.join().unwrap();
        assert!(gort::netpoll::is_closed_error(&e), "{e}");
        // Double close is an error, not a crash.
        assert!(gort::netpoll::is_closed_error(&a.close().unwrap_err()));
    });
}

/// Events for a closed fd must not wake a new registration that reuses the number.
#[test]
fn stale_events_after_fd_reuse_are_dropped() {
    gort::run(|| {
        for _ in 0..200 {
            let (r, w) = Fd::pipe().unwrap();
            let num = std::os::fd::AsRawFd::as_raw_fd(&r);
            w.write(b"x").unwrap(); // r becomes readable: an event may be pending
            drop(r);
            drop(w);
            let (r2, w2) = Fd::pipe().unwrap();
            // The kernel hands out the lowest free number, usually the same one.
            let _ = num;
            let mut b = [0u8; 1];
            r2.set_read_deadline(Some(Instant::now() + Duration::from_millis(2)));
            let e = r2.read(&mut b).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::TimedOut,
                "a stale event produced data or a wake"
            );
            drop(w2);
        }
    });
}

#[test]
fn read_deadlines_past_future_cleared() {
    gort::run(|| {
        let (r, w) = Fd::pipe().unwrap();
        let mut b = [0u8; 4];
        // Past deadline: fails at once.
        r.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)));
        assert_eq!(r.read(&mut b).unwrap_err().kind(), ErrorKind::TimedOut);
        // Buffered data is still returned after the deadline.
        w.write(b"ab").unwrap();
        assert_eq!(r.read(&mut b).unwrap(), 2);
        // Future deadline: fires, never early.
        let t0 = Instant::now();
        r.set_read_deadline(Some(t0 + Duration::from_millis(15)));
        let e = r.read(&mut b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "i/o timeout");
        assert!(t0.elapsed() >= Duration::from_millis(15));
        // Cleared: a write from another coroutine completes the read.
        r.set_read_deadline(None);
        let w = Arc::new(w);
        let w2 = w.clone();
        gort::spawn(move || {
            gort::time::sleep(Duration::from_millis(5));
            w2.write(b"z").unwrap();
        });
        assert_eq!(r.read(&mut b).unwrap(), 1);
    });
}

/// A deadline moved into the past wakes a reader that is already parked.
#[test]
fn deadline_changed_while_parked() {
    gort::run(|| {
        let (r, _w) = Fd::pipe().unwrap();
        let r = Arc::new(r);
        let r2 = r.clone();
        r.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)));
        let h = gort::spawn(move || {
            let mut b = [0u8; 1];
            r2.read(&mut b)
        });
        gort::time::sleep(Duration::from_millis(10));
        r.set_read_deadline(Some(Instant::now()));
        assert_eq!(h.join().unwrap().unwrap_err().kind(), ErrorKind::TimedOut);
    });
}

/// The same Fd works from plain threads (blocking the thread).
#[test]
fn plain_thread_reads_block_and_wake() {
    let (a, b) = socketpair();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 3];
        (&a).read_exact(&mut buf).unwrap();
        buf
    });
    std::thread::sleep(Duration::from_millis(10));
    (&b).write_all(b"abc").unwrap();
    assert_eq!(&t.join().unwrap(), b"abc");
}

/// Concurrent writers on one fd never interleave their bytes.
#[test]
fn concurrent_writers_do_not_interleave() {
    gort::run(|| {
        let (a, b) = socketpair();
        let a = Arc::new(a);
        let hs: Vec<_> = (0..8u8)
            .map(|k| {
                let a = a.clone();
                gort::spawn(move || {
                    let msg = vec![b'a' + k; 100_000];
                    a.write(&msg).unwrap();
                })
            })
            .collect();
        let reader = gort::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 8192];
            while all.len() < 800_000 {
                let n = b.read(&mut buf).unwrap();
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        for h in hs {
            h.join().unwrap();
        }
        let all = reader.join().unwrap();
        for chunk in all.chunks(100_000) {
            assert!(chunk.iter().all(|&c| c == chunk[0]), "bytes interleaved");
        }
    });
}

/// Writing to a socket whose peer is gone is an error, not a SIGPIPE
/// (Go: TestEPIPE behaviour of net.Conn writes).
#[test]
fn socket_write_to_closed_peer_is_epipe_not_sigpipe() {
    gort::run(|| {
        let (a, b) = socketpair();
        drop(b);
        let mut last = Ok(0);
        for _ in 0..10 {
            last = a.write(b"data");
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last.unwrap_err().kind(), ErrorKind::BrokenPipe);
        let bufs = [std::io::IoSlice::new(b"x")];
        assert_eq!(
            a.write_vectored(&bufs).unwrap_err().kind(),
            ErrorKind::BrokenPipe
        );
    });
}

/// Each worker polls its own epoll instance; a worker stuck in a coroutine that never yields
/// does not. A plain thread waiting on a descriptor whose home is that worker must still wake:
/// the monitor polls the busy worker's instance (Go's sysmon netpoll backstop).
#[test]
fn waiter_wakes_while_home_worker_is_stuck() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let rt = runtime::Builder::new()
        .workers(1)
        .watchdog(None)
        .build()
        .unwrap();
    let got = Arc::new(AtomicBool::new(false));
    let g2 = got.clone();
    let hog_timed_out = rt.run(move || {
        let (r, w) = Fd::pipe().unwrap();
        // The plain thread's first wait registers the pipe with worker 0, the only worker.
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 3];
            (&r).read_exact(&mut b).unwrap();
            assert_eq!(&b, b"abc");
            g2.store(true, Ordering::SeqCst);
        });
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            (&w).write_all(b"abc").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(w);
        });
        // Hog worker 0 without yielding until the reader got its bytes (or 20 s passed).
        let t = Instant::now();
        while !got.load(Ordering::SeqCst) {
            if t.elapsed() > Duration::from_secs(20) {
                return true;
            }
            std::hint::spin_loop();
        }
        reader.join().unwrap();
        false
    });
    assert!(
        !hog_timed_out,
        "reader was not woken while its home worker was busy"
    );
}

/// Registration is lazy (at the first wait), so a regular file, which epoll refuses, still
/// makes a working `Fd`: its reads never return EAGAIN and never wait (Go's `pollable`).
#[test]
fn regular_file_fd_reads_without_registration() {
    let path = std::env::temp_dir().join(format!("gort-regfile-{}", std::process::id()));
    std::fs::write(&path, b"hello").unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let fd = Fd::new(OwnedFd::from(f)).unwrap();
    let mut s = String::new();
    (&fd).read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
    std::fs::remove_file(&path).unwrap();
}

// Cooperative budget (`gort::io::IO_BUDGET`): a coroutine whose I/O never waits still lets a
// peer pinned to the same worker run (Go gets this from preemption; without the budget this
// loop would run all its 100k operations before the peer's first instruction).
#[test]
fn io_that_never_waits_still_yields_to_peers() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let ops = rt.run(|| {
        let (r, w) = Fd::pipe().unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran2 = ran.clone();
        let peer = gort::spawn(move || ran2.store(true, std::sync::atomic::Ordering::SeqCst));
        let mut ops = 0u32;
        let mut buf = [0u8; 1];
        // Each write and read completes at once: the pipe has room, and we drain it.
        while !ran.load(std::sync::atomic::Ordering::SeqCst) && ops < 100_000 {
            (&w).write_all(&[1]).unwrap();
            (&r).read_exact(&mut buf).unwrap();
            ops += 1;
        }
        peer.join().unwrap();
        ops
    });
    assert!(
        ops < 100_000,
        "the peer never ran during {ops} non-waiting operations"
    );
    // The budget yields every `IO_BUDGET` operations on an fd, and a never-run peer is taken
    // at least every 61 scheduling ticks (the fairness period), hence this bound.
    assert!(
        ops <= 64 * gort::io::IO_BUDGET,
        "the peer ran only after {ops} operations"
    );
}
