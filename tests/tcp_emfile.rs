//! gort-specific (Go's net tests have no EMFILE test; net/http TestAcceptMaxFds is the
//! nearest): with RLIMIT_NOFILE exhausted, accept returns EMFILE as an error (it does not
//! spin), and `is_temporary` says to back off. Runs in a child process (the test binary
//! re-executed with an env var) so the low limit is isolated.
use std::io::ErrorKind;

mod common;

#[test]
fn accept_emfile_in_child() {
    if common::in_child_process("accept_emfile_in_child", "GORT_EMFILE_CHILD", "EMFILE-OK") {
        child();
    }
}

fn child() {
    gort::run(|| {
        let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Connect from a std socket first, then use up every fd so accept4 gets EMFILE.
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let hold = common::exhaust_fds();
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
