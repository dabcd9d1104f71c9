//! [`gort::net::serve`]: one coroutine per connection, `Ok(())` once the listener is closed,
//! the first permanent accept error otherwise, and a growing pause (5 ms doubling to 1 s)
//! after temporary accept errors such as `EMFILE` instead of a busy loop.
#![allow(clippy::needless_borrow)] // `(&s).read(..)` spells out the shared-reference Read impl.
use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gort::net::{self, Addr, Conn, Listener, TcpListener, TcpStream};

mod common;
use common::wait_until;

const GUARD: Duration = Duration::from_secs(5);

/// Connects and returns the stream with a read timeout of [`GUARD`].
fn client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(GUARD)).unwrap();
    c
}

/// Reads exactly `want.len()` bytes from `c` and compares.
fn expect(c: &TcpStream, want: &[u8]) {
    let mut b = vec![0u8; want.len()];
    (&*c).read_exact(&mut b).unwrap();
    assert_eq!(b, want);
}

// Go: TestTCPServer (net/server_test.go, concurrent servers), here through `serve`: each
// handler blocks until all N connections are inside a handler, which only works if each one
// runs in its own coroutine.
#[test]
fn serve_runs_one_coroutine_per_connection() {
    const N: usize = 8;
    gort::run(|| {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let (l2, in2) = (l.clone(), inside.clone());
        let srv = gort::spawn(move || {
            net::serve(&*l2, move |c| {
                in2.fetch_add(1, Ordering::SeqCst);
                let all = wait_until(GUARD, || in2.load(Ordering::SeqCst) == N);
                c.write(if all { b"all" } else { b"one" }).ok();
            })
        });
        let clients: Vec<_> = (0..N).map(|_| client(addr)).collect();
        for c in &clients {
            expect(c, b"all");
        }
        l.close().unwrap();
        srv.join().unwrap().unwrap();
    });
}

// serve.rs contract (gort-specific; Go's http.Server.Serve returns ErrServerClosed instead):
// closing the listener from another coroutine ends a parked `serve` with `Ok(())`, and
// connections already handed to handlers keep working after it returned.
#[test]
fn serve_returns_ok_when_listener_closed() {
    gort::run(|| {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let (l2, st2) = (l.clone(), started.clone());
        let srv = gort::spawn(move || {
            net::serve(&*l2, move |c| {
                st2.fetch_add(1, Ordering::SeqCst);
                let mut b = [0u8; 4];
                (&*c).read_exact(&mut b).unwrap();
                c.write(&b).unwrap();
            })
        });
        let c = client(addr);
        assert!(wait_until(GUARD, || started.load(Ordering::SeqCst) == 1));
        gort::time::sleep(Duration::from_millis(10)); // serve is parked in accept again
        assert!(!srv.is_finished());
        l.close().unwrap();
        assert!(
            wait_until(GUARD, || srv.is_finished()),
            "serve still running"
        );
        srv.join().unwrap().unwrap();
        // The handler outlives serve.
        Conn::write(&c, b"ping").unwrap();
        expect(&c, b"ping");
        // A listener closed before serve starts: Ok(()) at once.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.close().unwrap();
        net::serve(&l, |_| unreachable!()).unwrap();
    });
}

/// A listener that replays scripted accept errors and then fails permanently.
struct Scripted {
    errs: Mutex<VecDeque<io::Error>>,
    calls: AtomicUsize,
}

impl Listener for Scripted {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.errs.lock().unwrap().pop_front();
        Err(next.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
    }
    fn close(&self) -> io::Result<()> {
        Ok(())
    }
    fn addr(&self) -> Addr {
        Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

// Go: net/http TestAcceptMaxFds (a listener whose accept fails with EMFILE, then for good):
// serve retries temporary errors after a pause and returns the first permanent error.
#[test]
fn serve_retries_temporary_errors_then_returns_permanent_one() {
    gort::run(|| {
        let l = Scripted {
            errs: Mutex::new(
                [libc::EMFILE, libc::ECONNABORTED, libc::ENFILE]
                    .map(io::Error::from_raw_os_error)
                    .into(),
            ),
            calls: AtomicUsize::new(0),
        };
        let t = Instant::now();
        let e = net::serve(&l, |_| unreachable!()).unwrap_err();
        assert_eq!(net::raw_os_error(&e), Some(libc::EINVAL), "{e}");
        assert_eq!(l.calls.load(Ordering::SeqCst), 4);
        // Pauses of 5, 10 and 20 ms after the three temporary errors.
        assert!(
            t.elapsed() >= Duration::from_millis(35),
            "{:?}",
            t.elapsed()
        );
    });
}

/// A TCP listener that counts its accept calls and the `EMFILE`s among them.
struct Counting {
    inner: TcpListener,
    calls: AtomicUsize,
    emfile: AtomicUsize,
}

impl Listener for Counting {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let r = Listener::accept(&self.inner);
        if let Err(e) = &r {
            if net::raw_os_error(e) == Some(libc::EMFILE) {
                self.emfile.fetch_add(1, Ordering::SeqCst);
            }
        }
        r
    }
    fn close(&self) -> io::Result<()> {
        Listener::close(&self.inner)
    }
    fn addr(&self) -> Addr {
        Listener::addr(&self.inner)
    }
}

// Go: net/http TestAcceptMaxFds, with a real EMFILE (in a child process, for its lowered
// RLIMIT_NOFILE): while no descriptor is left, serve keeps running and retries accept a few
// times (not in a busy loop); once descriptors are freed it serves the waiting clients.
#[test]
fn serve_backs_off_on_emfile() {
    if common::in_child_process(
        "serve_backs_off_on_emfile",
        "GORT_SERVE_EMFILE_CHILD",
        "SERVE-EMFILE-OK",
    ) {
        serve_emfile_child();
    }
}

fn serve_emfile_child() {
    const N: usize = 3;
    gort::run(|| {
        let l = Arc::new(Counting {
            inner: TcpListener::bind("127.0.0.1:0").unwrap(),
            calls: AtomicUsize::new(0),
            emfile: AtomicUsize::new(0),
        });
        let addr = l.inner.local_addr().unwrap();
        // The clients wait in the backlog; then no descriptor is left for accept4.
        let clients: Vec<_> = (0..N).map(|_| client(addr)).collect();
        let hold = common::exhaust_fds();
        let l2 = l.clone();
        let srv = gort::spawn(move || {
            net::serve(&*l2, |c| {
                c.write(b"hi").unwrap();
            })
        });
        assert!(wait_until(GUARD, || l.emfile.load(Ordering::SeqCst) > 0));
        let (c0, t0) = (l.calls.load(Ordering::SeqCst), Instant::now());
        gort::time::sleep(Duration::from_millis(300));
        let calls = l.calls.load(Ordering::SeqCst) - c0;
        // Pauses of 5, 10, 20, .. ms allow about 6 calls in 300 ms; a busy loop makes
        // thousands. A loaded machine only makes fewer.
        assert!(calls <= 20, "{calls} accept calls in {:?}", t0.elapsed());
        assert!(!srv.is_finished(), "serve returned during EMFILE");
        drop(hold);
        for c in &clients {
            expect(c, b"hi");
        }
        l.close().unwrap();
        srv.join().unwrap().unwrap();
        println!("SERVE-EMFILE-OK");
    });
}

// `serve_with_buffer` (gort's own): each handler gets its own zeroed buffer of the length
// asked for, kept for the connection's life; an oversized buffer fails before any accept.
#[test]
fn serve_with_buffer_gives_each_handler_its_buffer() {
    const N: usize = 4;
    gort::run(|| {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let l2 = l.clone();
        let srv = gort::spawn(move || {
            net::serve_with_buffer(&*l2, 3000, |mut c, buf| {
                assert_eq!(buf.len(), 3000);
                assert!(buf.iter().all(|&b| b == 0));
                // Echo until EOF, through the buffer.
                loop {
                    match c.read(buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
        });
        let clients: Vec<_> = (0..N).map(|_| client(addr)).collect();
        for (i, c) in clients.iter().enumerate() {
            let msg = format!("hello {i}");
            io::Write::write_all(&mut &*c, msg.as_bytes()).unwrap();
            expect(c, msg.as_bytes());
        }
        l.close().unwrap();
        srv.join().unwrap().unwrap();

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = net::serve_with_buffer(&l, gort::MAX_BUFFER + 1, |_, _| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    });
}
