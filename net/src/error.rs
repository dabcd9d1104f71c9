//! Go-style network errors: [`OpError`] (Go's `*net.OpError`) wrapped in an `io::Error`.
//!
//! What: every failing operation of gort-net returns `io::Error::new(kind, OpError{..})`,
//! where `kind` is the kind of the inner error, so callers can still `match e.kind()`, and
//! `Display` reads like Go: `dial tcp 127.0.0.1:1: connect: connection refused`,
//! `read tcp 127.0.0.1:5000->127.0.0.1:6000: i/o timeout`.
//!
//! Invariants: the inner error of a failed syscall is a [`SyscallError`] ("connect:
//! connection refused"), with the lower-cased `strerror` text as Go's `syscall.Errno` prints
//! it; timeouts and "use of closed network connection" are passed through unchanged.
//!
//! Differences from Go: `io::Error::new` hides `raw_os_error()` of the outer error; use
//! [`raw_os_error`] (or `OpError::err`) to get the errno, and [`is_closed_error`] instead of
//! `errors.Is(err, net.ErrClosed)`.
use std::borrow::Cow;
use std::fmt;
use std::io;

use crate::addr::Addr;

/// Go's `*net.OpError`: which operation on which network and addresses failed, and why.
#[derive(Debug)]
pub struct OpError {
    /// The operation: "dial", "listen", "accept", "read", "write", "close", "set", ...
    pub op: &'static str,
    /// The network: "tcp", "tcp4", "udp", "unix", ... (as the caller spelled it when it is
    /// not one of these: `dial tcpx: unknown network tcpx`).
    pub net: Cow<'static, str>,
    /// The local address, for operations on a connection (Go's `Source`).
    pub source: Option<Addr>,
    /// The remote address (or the listening address for listeners).
    pub addr: Option<Addr>,
    /// The underlying error.
    pub err: io::Error,
    /// Bytes written before a write failed ([`crate::Conn::write`] reports the count with
    /// the error, as Go's `Write` returns `n, err`); 0 for other operations.
    pub written: usize,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if !self.net.is_empty() {
            write!(f, " {}", self.net)?;
        }
        match (&self.source, &self.addr) {
            (Some(s), Some(a)) => write!(f, " {s}->{a}")?,
            (None, Some(a)) => write!(f, " {a}")?,
            (Some(s), None) => write!(f, " {s}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.err)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.err)
    }
}

/// A failed system call with its errno, printed as Go prints `*os.SyscallError`.
#[derive(Debug)]
pub struct SyscallError {
    /// The system call ("connect", "read", "accept4", ...).
    pub syscall: &'static str,
    /// The errno.
    pub errno: i32,
}

impl fmt::Display for SyscallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.syscall, errno_text(self.errno))
    }
}

impl std::error::Error for SyscallError {}

/// The Go-style text of an errno: `strerror` with a lower-case first letter.
pub fn errno_text(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    let s = match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// Gives an OS error its syscall name (Go's `os.NewSyscallError`); other errors pass.
#[cold]
#[inline(never)]
pub(crate) fn syscall(name: &'static str, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => io::Error::new(
            e.kind(),
            SyscallError {
                syscall: name,
                errno,
            },
        ),
        None => e,
    }
}

/// Wraps `err` in an [`OpError`], keeping its kind.
pub(crate) fn op_error(
    op: &'static str,
    net: &'static str,
    source: Option<Addr>,
    addr: Option<Addr>,
    err: io::Error,
) -> io::Error {
    io::Error::new(
        err.kind(),
        OpError {
            op,
            net: Cow::Borrowed(net),
            source,
            addr,
            err,
            written: 0,
        },
    )
}

/// `e` with [`OpError::written`] set to `n` (an error that is not an `OpError` is wrapped in
/// one, so the count is never lost).
pub(crate) fn with_written(e: io::Error, n: usize) -> io::Error {
    if n == 0 {
        return e;
    }
    let kind = e.kind();
    let wrap = |err: io::Error| OpError {
        op: "write",
        net: Cow::Borrowed(""),
        source: None,
        addr: None,
        err,
        written: n,
    };
    if e.get_ref().is_none() {
        return io::Error::new(kind, wrap(e));
    }
    let op = match e.into_inner().map(|x| x.downcast::<OpError>()) {
        Some(Ok(mut op)) => {
            op.written = n;
            *op
        }
        Some(Err(other)) => wrap(io::Error::new(kind, other)),
        None => wrap(io::Error::from(kind)), // not reached: `get_ref` was `Some`
    };
    io::Error::new(kind, op)
}

/// The bytes written before the write that returned `e` failed (Go's `n` beside `err`);
/// 0 when `e` says nothing about it.
pub fn written(e: &io::Error) -> usize {
    e.get_ref()
        .and_then(|x| x.downcast_ref::<OpError>())
        .map_or(0, |op| op.written)
}

fn innermost(e: &io::Error) -> &io::Error {
    let mut cur = e;
    while let Some(op) = cur.get_ref().and_then(|x| x.downcast_ref::<OpError>()) {
        cur = &op.err;
    }
    cur
}

/// True if `e` (possibly inside an [`OpError`]) is "use of closed network connection".
pub fn is_closed_error(e: &io::Error) -> bool {
    gort_runtime::netpoll::is_closed_error(innermost(e))
}

/// True if `e` is a deadline/timeout error (Go's `errors.Is(err, os.ErrDeadlineExceeded)`).
pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

/// The errno under `e`, looking through [`OpError`] and [`SyscallError`].
pub fn raw_os_error(e: &io::Error) -> Option<i32> {
    let e = innermost(e);
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    e.get_ref()
        .and_then(|x| x.downcast_ref::<SyscallError>())
        .map(|s| s.errno)
}
