//! Happy Eyeballs leaks no descriptor: the loser's socket is closed, whether it was still
//! connecting (cancelled) or connected after the race was decided. Alone in its binary, so
//! that no other test opens descriptors meanwhile. (Go has no such test; its racers close a
//! late connection when they see `returned`, as ours drop it.)
#[path = "common/hanging.rs"]
mod hanging;

use std::time::{Duration, Instant};

use gort::net::Dialer;
use hanging::*;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Waits at most 5 s for the count to come down to `base`; the last count. (Shorter than
/// the dials' 30 s deadline: a loser that was not cancelled would still hold its socket.)
fn settle(base: usize) -> usize {
    let t0 = Instant::now();
    loop {
        let n = fds();
        if n <= base || t0.elapsed() > Duration::from_secs(5) {
            return n;
        }
        gort::time::sleep(Duration::from_millis(20));
    }
}

#[test]
fn raced_dials_leak_no_fd() {
    // localhost:hport: 127.0.0.1 hangs, ::1 accepts; localhost:lport: both accept.
    let (h, live6, hport) = localhost_pair(
        || {
            let h = hanging(V4, 0)?;
            let port = h.addr.port();
            Ok((h, port))
        },
        |port| accepting(V6, port),
    );
    let (_, _, lport) = localhost_pair(
        || Ok(((), accepting(V4, 0)?.port())),
        |port| accepting(V6, port),
    );
    gort::run(move || {
        let _h = h;
        let d30 = Dialer::new().timeout(Duration::from_secs(30));
        // The hanging primary is cancelled after the fallback won.
        let slow = d30.clone().fallback_delay(Duration::from_millis(5));
        // Both live and the fallback at once: often both connect, and the loser is dropped.
        let both = d30.fallback_delay(Duration::from_nanos(1));
        let dial = |d: &Dialer, port: u16| d.dial("tcp", &format!("localhost:{port}")).unwrap();
        // Warm up (the runtime's own descriptors), let it settle, then count.
        drop((dial(&slow, hport), dial(&both, lport)));
        gort::time::sleep(Duration::from_millis(300));
        let base = fds();
        for _ in 0..200 {
            let c = dial(&slow, hport);
            assert_eq!(c.remote_addr().socket_addr(), Some(live6));
        }
        for _ in 0..200 {
            drop(dial(&both, lport));
        }
        assert_eq!(settle(base), base, "descriptors leaked");
    });
}
