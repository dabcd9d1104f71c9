//! Go: TestAcceptErrorEMFILE-like behaviour: with RLIMIT_NOFILE exhausted, accept returns
//! EMFILE as an error (it does not spin), and `is_temporary` says to back off. Runs in a
//! child process (the test binary re-executed with an env var) so the low limit is isolated.
use std::io::ErrorKind;

#[test]
fn accept_emfile_in_child() {
    if std::env::var_os("GORT_EMFILE_CHILD").is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["accept_emfile_in_child", "--exact", "--nocapture"])
        .env("GORT_EMFILE_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("EMFILE-OK"), "{text}");
}

fn child() {
    gort::run(|| {
        let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Connect from a std socket first, then use up every fd so accept4 gets EMFILE.
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let lim = libc::rlimit {
            rlim_cur: 64,
            rlim_max: 64,
        };
        // SAFETY: setrlimit with a valid struct; lowers only this child process's soft limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        let mut hold = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hold.push(f);
        }
        let e = l.accept().unwrap_err();
        assert_eq!(gort::net::raw_os_error(&e), Some(libc::EMFILE), "{e}");
        assert!(gort::net::is_temporary(&e));
        assert_ne!(e.kind(), ErrorKind::WouldBlock);
        drop(hold);
        // With fds available again the pending connection is accepted.
        l.accept().unwrap();
        println!("EMFILE-OK");
    });
}
