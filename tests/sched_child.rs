//! Behaviours that end or disturb a process run in a child (this test binary re-executed
//! with `GORT_CHILD` set) and are checked through its exit status and stderr.
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::Duration;

fn child(case: &str, test: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("GORT_CHILD", case)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn is_child(case: &str) -> bool {
    std::env::var("GORT_CHILD").is_ok_and(|v| v == case)
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n as u8; 512]);
    if n == u64::MAX {
        return 0;
    }
    recurse(n + 1) + buf[7] as u64
}

#[test]
fn stack_overflow_names_the_coroutine() {
    if is_child("overflow") {
        let h = gort::Builder::new()
            .name("deep")
            .stack_size(32 * 1024)
            .spawn(|| recurse(0))
            .unwrap();
        let _ = h.join();
        unreachable!("overflow did not abort");
    }
    let out = child("overflow", "stack_overflow_names_the_coroutine");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr: {err}");
    assert!(err.contains("\"deep\""), "stderr: {err}");
    assert!(err.contains("overflowed its 32 KiB stack"), "stderr: {err}");
    assert!(
        err.contains("tests/sched_child.rs"),
        "spawn site missing: {err}"
    );
}

#[test]
fn watchdog_warns_once_about_a_stuck_coroutine() {
    if is_child("watchdog") {
        let rt = gort::runtime::Builder::new()
            .workers(1)
            .watchdog(Some(Duration::from_millis(10)))
            .build()
            .unwrap();
        rt.spawn_with(gort::Builder::new().name("hog"), || {
            // Busy, never yields, for 300 ms.
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_millis(300) {
                std::hint::spin_loop();
            }
        })
        .unwrap()
        .join()
        .unwrap();
        return;
    }
    let out = child("watchdog", "watchdog_warns_once_about_a_stuck_coroutine");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {err}");
    let warnings = err.matches("gort: watchdog:").count();
    assert_eq!(warnings, 1, "stderr: {err}");
    assert!(err.contains("\"hog\""), "stderr: {err}");
    assert!(err.contains("tests/sched_child.rs"), "stderr: {err}");
}

#[test]
fn sigquit_prints_goroutine_dump_and_exits_2() {
    if is_child("sigquit") {
        let rt = gort::runtime::Builder::new()
            .workers(1)
            .dump_on_sigquit(true)
            .build()
            .unwrap();
        let (r, _w) = gort::io::Fd::pipe().unwrap();
        let _h = rt
            .spawn_with(gort::Builder::new().name("blocked-reader"), move || {
                let mut b = [0u8; 1];
                let _ = r.read(&mut b);
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: sending SIGQUIT to ourselves.
        unsafe { libc::kill(libc::getpid(), libc::SIGQUIT) };
        std::thread::sleep(Duration::from_secs(10));
        unreachable!("no exit after SIGQUIT");
    }
    let out = child("sigquit", "sigquit_prints_goroutine_dump_and_exits_2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("SIGQUIT: quit"), "stderr: {err}");
    assert!(err.contains("[IO wait: fd read"), "stderr: {err}");
    assert!(err.contains("\"blocked-reader\""), "stderr: {err}");
}

#[test]
fn unjoined_panic_prints_and_process_lives() {
    if is_child("panic") {
        let h = gort::Builder::new()
            .name("doomed")
            .spawn(|| panic!("kaboom"))
            .unwrap();
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(h);
        assert_eq!(gort::run(|| 3), 3);
        println!("still alive");
        return;
    }
    let out = child("panic", "unjoined_panic_prints_and_process_lives");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {err}");
    assert!(
        err.contains("\"doomed\" panicked at tests/sched_child.rs"),
        "stderr: {err}"
    );
    assert!(err.contains("kaboom"), "stderr: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("still alive"));
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// A dropped runtime closes its epoll instances and eventfds (gort-specific: Go has one
// runtime per process). 50 runtimes of 4 workers each would leak 400 descriptors before.
// Each runtime also gets a connection that outlives it: its drop (deregistration) and a
// late wake-up must not touch the closed (and by then reused) numbers.
#[test]
fn dropped_runtimes_close_their_descriptors() {
    if is_child("rt_fds") {
        let before = open_fds();
        let mut survivors = Vec::new();
        for _ in 0..50 {
            let rt = gort::runtime::Builder::new().workers(4).build().unwrap();
            let (c, s) = rt.run(|| {
                let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let c = gort::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
                let (s, _) = l.accept().unwrap();
                // Registered with this runtime's poller (a wait happened on the way).
                s.set_read_deadline(Some(std::time::Instant::now()))
                    .unwrap();
                let _ = std::io::Read::read(&mut &s, &mut [0u8; 1]);
                (c, s)
            });
            drop(rt);
            survivors.push((c, s));
        }
        let with_survivors = open_fds();
        drop(survivors);
        let after = open_fds();
        println!("FDS before={before} with={with_survivors} after={after}");
        std::process::exit(0);
    }
    let out = child("rt_fds", "dropped_runtimes_close_their_descriptors");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {out:?}");
    let at = text.find("FDS ").expect("no FDS line");
    let line = text[at..].lines().next().unwrap();
    let n: Vec<usize> = line
        .split_whitespace()
        .skip(1)
        .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
        .collect();
    let (before, with, after) = (n[0], n[1], n[2]);
    // 100 sockets survive the runtimes; nothing else may.
    assert!(with <= before + 100 + 4, "{line}");
    assert!(after <= before + 4, "{line}");
}
