//! Helpers shared by the integration tests. Each test binary uses only some of them.
#![allow(dead_code)]
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::net::{TcpListener, TcpStream};
use socket2::{SockAddr, SockRef, Type};

/// A connected loopback TCP pair: (client, server side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// A fresh, empty directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `gort-<tag>-<pid>-<n>`; fails if it cannot make a new one.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("gort-{tag}-{}-{n}", std::process::id()));
        // A leftover of an earlier process with the same pid: not ours to keep.
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        TempDir(p)
    }

    /// The path of `name` inside the directory, as a string (the socket APIs take `&str`).
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// For tests that need a process of their own (a lowered `RLIMIT_NOFILE`, ...): in the parent,
/// re-runs test `name` of this binary with `env` set and asserts that it succeeded and printed
/// `marker`, then returns `false`; in that child, returns `true` (run the test body then).
pub fn in_child_process(name: &str, env: &str, marker: &str) -> bool {
    if std::env::var_os(env).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(marker), "{text}");
    false
}

/// Waits (polling) until `done()` or `limit` passed; true if `done()`.
pub fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() >= end {
            return false;
        }
        gort::time::sleep(Duration::from_millis(2));
    }
    true
}

/// Runs `op(&obj)` in a coroutine, lets it park, calls `close(&obj)` from this coroutine and
/// returns the error the parked operation woke with. Panics if it returned before the close
/// (it was not parked) or did not wake within 10 s of it (a lost wake-up).
pub fn close_while_parked<T, R>(
    obj: T,
    op: impl FnOnce(&T) -> io::Result<R> + Send + 'static,
    close: impl FnOnce(&T) -> io::Result<()>,
) -> io::Error
where
    T: Send + Sync + 'static,
    R: std::fmt::Debug + Send + 'static,
{
    let obj = Arc::new(obj);
    let o = obj.clone();
    let h = gort::spawn(move || op(&o));
    gort::time::sleep(Duration::from_millis(20));
    assert!(!h.is_finished(), "the operation returned before close");
    close(&obj).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || h.is_finished()),
        "close did not wake the parked operation"
    );
    h.join().unwrap().unwrap_err()
}

/// Asserts that `fd` is non-blocking (`O_NONBLOCK`) and close-on-exec (`FD_CLOEXEC`).
pub fn assert_nonblocking_cloexec(fd: RawFd, what: &str) {
    // SAFETY: F_GETFD and F_GETFL only read the flags of `fd`; a closed number gives -1.
    let (fdfl, fl) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFD),
            libc::fcntl(fd, libc::F_GETFL),
        )
    };
    assert!(fdfl >= 0 && fl >= 0, "{what}: fcntl on fd {fd} failed");
    assert_ne!(
        fdfl & libc::FD_CLOEXEC,
        0,
        "{what}: fd {fd} is not close-on-exec"
    );
    assert_ne!(fl & libc::O_NONBLOCK, 0, "{what}: fd {fd} is blocking");
}

/// A Control hook for `ListenConfig`/`Dialer` that asserts each new socket is non-blocking
/// and close-on-exec before gort registers it (so the flags come from its creation), and the
/// count of sockets it checked.
pub fn flag_checking_control() -> (
    Arc<AtomicUsize>,
    impl Fn(&str, &str, SockRef<'_>) -> io::Result<()> + Clone + Send + Sync + 'static,
) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let hook = move |net: &str, addr: &str, s: SockRef<'_>| {
        assert_nonblocking_cloexec(s.as_raw_fd(), &format!("new {net} socket for {addr}"));
        n2.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    (n, hook)
}

fn sock_name(fd: RawFd, peer: bool) -> Option<SockAddr> {
    // SAFETY: `try_init` hands over zeroed storage and its length; getsockname/getpeername
    // write at most `len` bytes into it and update `len`. Any fd number is fine to ask.
    let r = unsafe {
        SockAddr::try_init(|st, len| {
            let rc = if peer {
                libc::getpeername(fd, st.cast(), len)
            } else {
                libc::getsockname(fd, st.cast(), len)
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
    };
    r.ok().map(|(_, a)| a)
}

fn sock_type(fd: RawFd) -> Option<Type> {
    // SAFETY: the borrow lives only for this call, and a number that is not an open socket
    // just makes getsockopt fail (EBADF/ENOTSOCK); nothing is closed through it.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    SockRef::from(&b).r#type().ok()
}

/// The descriptors of this process with a socket of type `ty` whose local (`peer == false`,
/// getsockname) or remote (`peer == true`, getpeername) address satisfies `want`: for the
/// socket types that offer no `AsRawFd`.
pub fn socket_fds(ty: Type, peer: bool, want: impl Fn(&SockAddr) -> bool) -> Vec<RawFd> {
    let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| sock_type(fd) == Some(ty))
        .filter(|&fd| sock_name(fd, peer).is_some_and(|a| want(&a)))
        .collect();
    fds.sort_unstable();
    fds
}

/// Lowers this process's soft `RLIMIT_NOFILE` to 16 above its highest open descriptor, then
/// opens `/dev/null` until that fails with `EMFILE`. While the files are held no descriptor
/// can be made; dropping them frees at least 16. Only for a child process
/// ([`in_child_process`]): the limit stays lowered. Parks for 20 ms.
pub fn exhaust_fds() -> Vec<std::fs::File> {
    let top: libc::rlim_t = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .max()
        .unwrap();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct; only this process's soft limit drops.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_cur.min(top + 17);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    let fill = |hold: &mut Vec<std::fs::File>| loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hold.push(f),
            Err(e) => return e,
        }
    };
    let mut hold = Vec::new();
    fill(&mut hold);
    // A runtime thread may have held a descriptor for a moment during the fill (the monitor
    // reads /proc when a worker has run one coroutine for long) and given it back since: park
    // (so no worker looks stuck), then take whatever came back.
    gort::time::sleep(Duration::from_millis(20));
    let e = fill(&mut hold);
    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
    assert!(hold.len() >= 16, "only {} descriptors held", hold.len());
    hold
}
