//! Unix-socket tests (Go: net/unixsock_test.go TestUnixListenerUnlinkOnClose-like, TestUnixgram*).
#![allow(clippy::needless_borrow)] // `(&s).read(..)` spells out the shared-reference Read impl.
use std::io::{Read, Write};

fn tmp(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("gort-{name}-{}.sock", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

// Stream: echo, and the listener removes its socket file on close.
#[test]
fn stream_and_unlink_on_close() {
    let p = tmp("stream");
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
    let (pa, pb) = (tmp("dga"), tmp("dgb"));
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
        let _ = std::fs::remove_file(&pa);
        let _ = std::fs::remove_file(&pb);
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
