//! A context bound to a connection cancels its parked reads (Go: net/http's use of
//! context.AfterFunc + SetDeadline; behaviour of TestDialContextCancel-style tests).
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::context::{self, ContextError};
use gort::net::{bind_context, TcpListener, TcpStream};

#[test]
fn cancel_fails_a_parked_read() {
    gort::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _peer = gort::spawn(move || {
            let (c, _) = l.accept().unwrap();
            gort::time::sleep(Duration::from_millis(200));
            drop(c);
        });
        let conn = Arc::new(TcpStream::connect(addr).unwrap());
        let (ctx, cancel) = context::with_cancel(&context::background());
        let _g = bind_context(&conn, &ctx).unwrap();
        let c2 = conn.clone();
        let reader = gort::spawn(move || {
            let mut b = [0u8; 8];
            (&*c2).read(&mut b)
        });
        gort::time::sleep(Duration::from_millis(10));
        cancel.cancel();
        let e = reader.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(ctx.err(), Some(ContextError::Canceled));
    });
}

#[test]
fn context_deadline_applies_and_stop_detaches() {
    gort::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _peer = gort::spawn(move || {
            let (c, _) = l.accept().unwrap();
            gort::time::sleep(Duration::from_millis(300));
            drop(c);
        });
        let conn = Arc::new(TcpStream::connect(addr).unwrap());
        let t0 = Instant::now();
        let (ctx, _cancel) =
            context::with_timeout(&context::background(), Duration::from_millis(20));
        let g = bind_context(&conn, &ctx).unwrap();
        let mut b = [0u8; 8];
        let e = (&*conn).read(&mut b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        drop(g);
        // Detached: clearing the deadline makes the connection usable again.
        conn.set_deadline(None).unwrap();
        assert_eq!(
            (&*conn).read(&mut b).unwrap(),
            0,
            "peer closes after 300 ms: EOF"
        );
    });
}
