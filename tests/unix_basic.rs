//! Unix-socket tests (Go: net/unixsock_test.go TestUnixListenerUnlinkOnClose-like, TestUnixgram*).
#![allow(clippy::needless_borrow)] // `(&s).read(..)` spells out the shared-reference Read impl.
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use gort::net::{is_closed_error, ListenConfig, UnixDatagram, UnixListener, UnixStream};
use socket2::{SockAddr, Type};

mod common;
use common::TempDir;

// Stream: echo, and the listener removes its socket file on close.
#[test]
fn stream_and_unlink_on_close() {
    let dir = TempDir::new("unix-stream");
    let p = dir.file("s.sock");
    gort::run(move || {
        let l = gort::net::UnixListener::bind(&p).unwrap();
        assert!(std::path::Path::new(&p).exists());
        let mut c = gort::net::UnixStream::connect(&p).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        l.close().unwrap();
        assert!(!std::path::Path::new(&p).exists());
    });
}

// Datagram: send_to/recv_from with paths, empty datagram, pair.
#[test]
fn datagram() {
    let dir = TempDir::new("unix-dgram");
    let (pa, pb) = (dir.file("a.sock"), dir.file("b.sock"));
    gort::run(move || {
        let a = gort::net::UnixDatagram::bind(&pa).unwrap();
        let b = gort::net::UnixDatagram::bind(&pb).unwrap();
        a.send_to(b"x", &pb).unwrap();
        a.send_to(b"", &pb).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((n, from.to_string()), (1, pa.clone()));
        assert_eq!(b.recv(&mut buf).unwrap(), 0);
        let (x, y) = gort::net::UnixDatagram::pair().unwrap();
        x.send(b"pp").unwrap();
        assert_eq!(y.recv(&mut buf).unwrap(), 2);
    });
}

// Go: TestListenerClose (net/net_test.go), for unix: closing the listener from another
// coroutine wakes a parked accept with "use of closed network connection".
#[test]
fn close_wakes_parked_accept() {
    let dir = TempDir::new("unix-accept");
    let p = dir.file("l.sock");
    gort::run(move || {
        let l = UnixListener::bind(&p).unwrap();
        let e = common::close_while_parked(l, |l| l.accept().map(drop), UnixListener::close);
        assert!(is_closed_error(&e), "{e}");
    });
}

// Go: TestCloseUnblocksRead (net/net_test.go, on TCP there), on a unix stream: closing it from
// another coroutine wakes a parked read with "use of closed network connection".
#[test]
fn close_wakes_parked_read() {
    gort::run(|| {
        let (a, _b) = UnixStream::pair().unwrap();
        let e = common::close_while_parked(
            a,
            |mut a: &UnixStream| a.read(&mut [0u8; 8]),
            UnixStream::close,
        );
        assert!(is_closed_error(&e), "{e}");
    });
}

// gort-specific (net/src/lib.rs invariant; Go's sockets are born SOCK_NONBLOCK|SOCK_CLOEXEC
// too, untested there): the listener (checked in its Control hook, before gort registers it,
// and once set up), accepted, dialed and try_clone'd streams and a datagram socket are all
// non-blocking and close-on-exec.
#[test]
fn fds_nonblocking_cloexec() {
    let dir = TempDir::new("unix-flags");
    let (lp, dp) = (dir.file("l.sock"), dir.file("d.sock"));
    gort::run(move || {
        let (hooked, check) = common::flag_checking_control();
        let l = ListenConfig::new()
            .control(check)
            .listen("unix", &lp)
            .unwrap();
        assert_eq!(hooked.load(Ordering::SeqCst), 1);
        let c = UnixStream::connect(&lp).unwrap();
        let c2 = c.try_clone().unwrap();
        let s = l.accept().unwrap();
        let d = UnixDatagram::bind(&dp).unwrap();
        let at = |p: &str| {
            let p = Path::new(p).to_path_buf();
            move |a: &SockAddr| a.as_pathname() == Some(p.as_path())
        };
        // An accepted unix socket has the listener's path as its own address.
        let bound = common::socket_fds(Type::STREAM, false, at(&lp));
        let dialed = common::socket_fds(Type::STREAM, true, at(&lp));
        let dgram = common::socket_fds(Type::DGRAM, false, at(&dp));
        let found = (bound.len(), dialed.len(), dgram.len());
        assert_eq!(found, (2, 2, 1), "{bound:?} {dialed:?} {dgram:?}");
        for fd in bound.into_iter().chain(dialed).chain(dgram) {
            common::assert_nonblocking_cloexec(fd, "unix socket");
        }
        drop((c, c2, s, d, l));
    });
}

// Abstract-namespace names print as Go prints them, `@name` (Go: TestUnixAutobind and
// TestUnixConnLocalAndRemoteNames check the abstract names it reports).
#[test]
fn abstract_names_print_with_at() {
    let name = format!("@gort-abstract-{}", std::process::id());
    gort::run(move || {
        let l = gort::net::UnixListener::bind(&name).unwrap();
        assert_eq!(l.local_addr().to_string(), name);
        let c = gort::net::UnixStream::connect(&name).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(c.peer_addr().to_string(), name);
        assert_eq!(s.local_addr().to_string(), name);
        assert_eq!(c.local_addr().to_string(), ""); // unnamed client side
        let d = gort::net::UnixDatagram::bind(format!("{name}-dg")).unwrap();
        assert_eq!(d.local_addr().to_string(), format!("{name}-dg"));
        let e = gort::net::UnixStream::connect(format!("{name}-none")).unwrap_err();
        assert!(e.to_string().contains(&format!("{name}-none")), "{e}");
        l.close().unwrap();
    });
}
