use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn spawn_join_many_across_workers() {
    let v = gort::run(|| {
        let hs: Vec<_> = (0..10_000u64).map(|i| gort::spawn(move || i * 2)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(v, (0..10_000u64).map(|i| i * 2).sum());
}

#[test]
fn sleep_never_early_and_pipe_wakes() {
    gort::run(|| {
        let t = Instant::now();
        gort::time::sleep(Duration::from_millis(20));
        assert!(t.elapsed() >= Duration::from_millis(20));
        let (r, w) = gort::io::Fd::pipe().unwrap();
        let h = gort::spawn(move || {
            let mut buf = [0u8; 5];
            (&r).read_exact(&mut buf).unwrap();
            buf
        });
        gort::time::sleep(Duration::from_millis(5));
        (&w).write_all(b"hello").unwrap();
        assert_eq!(&h.join().unwrap(), b"hello");
    });
}

#[test]
fn yield_and_panic() {
    let r = gort::spawn(|| {
        for _ in 0..100 {
            gort::yield_now();
        }
        panic!("boom");
    })
    .join();
    assert_eq!(r.unwrap_err().message(), Some("boom"));
}
