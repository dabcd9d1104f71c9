//! [`Sock`]: the socket core shared by every socket type (Go's `net.netFD`).
//!
//! What: a `gort_runtime::io::Fd` (lock/refcount/close/deadlines, parking on `EAGAIN`) plus
//! the socket syscalls done through socket2 on a borrowed fd: `send` with `MSG_NOSIGNAL`
//! (a write to a closed peer gives `EPIPE`, never `SIGPIPE`), `accept4` with
//! `SOCK_NONBLOCK|SOCK_CLOEXEC` retrying `ECONNABORTED`, non-blocking `connect` that parks
//! until writable within a deadline, datagram send/recv, and std-style per-operation
//! timeouts layered on deadlines.
//!
//! Invariants: every syscall runs while an `Fd` guard (read, write or plain reference) is
//! held, so the fd number cannot be closed and reused under it. Stream writes hold the write
//! lock for the whole buffer, so concurrent writers never interleave bytes. Errors here are
//! raw (`SyscallError`-tagged); the socket types wrap them in `OpError`.
//!
//! std-style timeouts are not a second mechanism: each operation arms the Go-style deadline
//! of its direction with now + timeout (so a timeout overrides a deadline set by hand, and
//! clearing the timeout clears the deadline). A socket uses one style or the other.
//!
//! Differences from Go: Go checks deadlines before the syscall (`prepareRead`); here the
//! syscall is tried first so already-buffered data is returned after a deadline, as the gort
//! issue asks.
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gort_runtime::io::Fd;
use socket2::{SockAddr, SockRef, Socket};

use crate::error::syscall;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Sock {
    pub(crate) fd: Fd,
    /// std-style read timeout in ns (0 = none), applied as a deadline per operation.
    rto: AtomicU64,
    wto: AtomicU64,
}

fn uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; socket2 only writes initialized bytes
    // into the slice and never de-initializes it, so the `&mut [u8]` stays valid.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// Runs `f` on a socket2 view of `raw`. Callers hold an `Fd` guard, which keeps `raw` open.
fn with_ref<R>(raw: RawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: every caller holds a guard on the `Fd` owning `raw` (see the module invariant),
    // so the descriptor stays open for the duration of this borrow.
    let b = unsafe { BorrowedFd::borrow_raw(raw) };
    f(SockRef::from(&b))
}

pub(crate) fn dur_ns(d: Option<Duration>) -> io::Result<u64> {
    match d {
        None => Ok(0),
        Some(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        )),
        Some(d) => Ok(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)),
    }
}

fn ns_dur(n: u64) -> Option<Duration> {
    (n != 0).then(|| Duration::from_nanos(n))
}

impl Sock {
    /// Takes a socket (created non-blocking and close-on-exec) and registers it.
    pub(crate) fn new(s: Socket) -> io::Result<Sock> {
        Ok(Sock {
            fd: Fd::new(OwnedFd::from(s))?,
            rto: AtomicU64::new(0),
            wto: AtomicU64::new(0),
        })
    }

    /// [`Sock::new`] for a connected TCP socket (reads take the short-read shortcut of
    /// [`Fd::new_tcp`]).
    pub(crate) fn new_tcp(s: Socket) -> io::Result<Sock> {
        Ok(Sock {
            fd: Fd::new_tcp(OwnedFd::from(s))?,
            rto: AtomicU64::new(0),
            wto: AtomicU64::new(0),
        })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Runs `f` with a socket2 view under a plain reference (setsockopt and friends).
    pub(crate) fn opt<R>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> io::Result<R> {
        let _g = self.fd.incref()?;
        with_ref(self.raw(), f)
    }

    /// Runs a deadline setter unless the socket is closed (Go's `SetDeadline` returns
    /// `ErrClosed` on a closed connection).
    pub(crate) fn deadline(&self, f: impl FnOnce(&Fd)) -> io::Result<()> {
        let _g = self.fd.incref()?;
        f(&self.fd);
        Ok(())
    }

    pub(crate) fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.rto.store(dur_ns(d)?, Ordering::Relaxed);
        if d.is_none() {
            self.fd.set_read_deadline(None);
        }
        Ok(())
    }
    pub(crate) fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.wto.store(dur_ns(d)?, Ordering::Relaxed);
        if d.is_none() {
            self.fd.set_write_deadline(None);
        }
        Ok(())
    }
    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        ns_dur(self.rto.load(Ordering::Relaxed))
    }
    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        ns_dur(self.wto.load(Ordering::Relaxed))
    }
    fn arm_read(&self) {
        let n = self.rto.load(Ordering::Relaxed);
        if n != 0 {
            self.fd
                .set_read_deadline(Instant::now().checked_add(Duration::from_nanos(n)));
        }
    }
    fn arm_write(&self) {
        let n = self.wto.load(Ordering::Relaxed);
        if n != 0 {
            self.fd
                .set_write_deadline(Instant::now().checked_add(Duration::from_nanos(n)));
        }
    }

    /// Stream read: `Ok(0)` at EOF or for an empty `buf` (at once); a reset is an error.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.arm_read();
        }
        self.fd.read(buf).map_err(|e| syscall("read", e))
    }

    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return self.fd.incref().map(|_| 0);
        }
        self.arm_read();
        self.fd.read_vectored(bufs).map_err(|e| syscall("readv", e))
    }

    /// Stream write of all of `buf` (`Fd::write`: under the write lock, `MSG_NOSIGNAL`). If an
    /// error follows some bytes, returns the count (the error recurs on the next call).
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.arm_write();
        }
        self.fd.write(buf).map_err(|e| syscall("write", e))
    }

    /// One `sendmsg` with `MSG_NOSIGNAL` (may be partial, as `Write::write_vectored` allows).
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return self.fd.incref().map(|_| 0);
        }
        self.arm_write();
        self.fd
            .write_vectored(bufs)
            .map_err(|e| syscall("writev", e))
    }

    /// `accept4(SOCK_NONBLOCK|SOCK_CLOEXEC)`, retrying `ECONNABORTED`; `EMFILE` and other
    /// errors are returned at once (the caller decides whether to back off).
    pub(crate) fn accept(&self) -> io::Result<(Socket, SockAddr)> {
        self.arm_read();
        self.fd
            .read_with(|raw| loop {
                // SAFETY: `try_init` hands us zeroed storage and its length; accept4 writes at
                // most `len` bytes into it and updates `len`.
                let r = unsafe {
                    SockAddr::try_init(|st, len| {
                        let fd = libc::accept4(
                            raw,
                            st.cast(),
                            len,
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        );
                        if fd < 0 {
                            Err(io::Error::last_os_error())
                        } else {
                            Ok(fd)
                        }
                    })
                };
                match r {
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                    Err(e) => return Err(e),
                    Ok((fd, addr)) => {
                        // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
                        let s = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                        return Ok((s, addr));
                    }
                }
            })
            .map_err(|e| syscall("accept4", e))
    }

    /// Non-blocking connect; parks until writable or `deadline`, then reads `SO_ERROR`.
    pub(crate) fn connect(&self, addr: &SockAddr, deadline: Option<Instant>) -> io::Result<()> {
        let _g = self.fd.lock_write()?;
        match with_ref(self.raw(), |s| s.connect(addr)) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(syscall("connect", e)),
        }
        self.fd.set_write_deadline(deadline);
        let r = loop {
            if let Err(e) = self.fd.registration().wait_write() {
                break Err(e);
            }
            match with_ref(self.raw(), |s| s.take_error()) {
                Ok(Some(e)) => break Err(syscall("connect", e)),
                Err(e) => break Err(syscall("getsockopt", e)),
                Ok(None) => {}
            }
            // Writable with no error: connected if the peer name is known.
            match with_ref(self.raw(), |s| s.peer_addr()) {
                Ok(_) => break Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
                Err(e) => break Err(syscall("getpeername", e)),
            }
        };
        self.fd.set_write_deadline(None);
        r
    }

    /// One datagram send (an empty datagram is sent too).
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.arm_write();
        self.fd
            .write_with(|raw| with_ref(raw, |s| s.send_with_flags(buf, libc::MSG_NOSIGNAL)))
            .map_err(|e| syscall("write", e))
    }

    pub(crate) fn send_to(&self, buf: &[u8], to: &SockAddr) -> io::Result<usize> {
        self.arm_write();
        self.fd
            .write_with(|raw| with_ref(raw, |s| s.send_to_with_flags(buf, to, libc::MSG_NOSIGNAL)))
            .map_err(|e| syscall("sendto", e))
    }

    /// One datagram receive; `Ok(0)` may be an empty datagram (it is not EOF). An empty
    /// `buf` returns `Ok(0)` at once and leaves the queue alone, as Go's `Read` does.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return self.fd.incref().map(|_| 0);
        }
        self.arm_read();
        let b = uninit(buf);
        self.fd
            .read_with(|raw| with_ref(raw, |s| s.recv(b)))
            .map_err(|e| syscall("recvfrom", e))
    }

    /// One datagram receive with its sender. Unlike [`Sock::recv`], an empty `buf` still
    /// waits for a datagram and consumes it (truncated to nothing), as Go's `ReadFrom` does:
    /// the caller asked for the sender's address.
    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        self.arm_read();
        let b = uninit(buf);
        self.fd
            .read_with(|raw| with_ref(raw, |s| s.recv_from(b)))
            .map_err(|e| syscall("recvfrom", e))
    }

    pub(crate) fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        self.arm_read();
        let b = uninit(buf);
        self.fd
            .read_with(|raw| with_ref(raw, |s| s.peek_from(b)))
            .map_err(|e| syscall("recvfrom", e))
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.opt(|s| s.shutdown(how))
            .map_err(|e| syscall("shutdown", e))
    }

    pub(crate) fn local(&self) -> io::Result<SockAddr> {
        self.opt(|s| s.local_addr())
            .map_err(|e| syscall("getsockname", e))
    }
    pub(crate) fn peer(&self) -> io::Result<SockAddr> {
        self.opt(|s| s.peer_addr())
            .map_err(|e| syscall("getpeername", e))
    }

    /// A second registered socket on a `dup` of this one (std's `try_clone`).
    pub(crate) fn try_clone(&self) -> io::Result<Sock> {
        let s = self.opt(|s| s.try_clone()).map_err(|e| syscall("dup", e))?;
        if self.fd.is_tcp() {
            Sock::new_tcp(s)
        } else {
            Sock::new(s)
        }
    }
}

/// Go's three deadline setters for a connection type that has a `sock: Sock` field; `$err`
/// turns a raw error into the type's `OpError` (`|conn, e| ...`).
macro_rules! deadline_methods {
    ($err:expr) => {
        /// Sets read and write deadlines (`None` clears; a past deadline fails waits at once).
        pub fn set_deadline(&self, d: Option<Instant>) -> io::Result<()> {
            self.sock
                .deadline(|fd| fd.set_deadline(d))
                .map_err(|e| ($err)(self, e))
        }
        /// Sets the read deadline.
        pub fn set_read_deadline(&self, d: Option<Instant>) -> io::Result<()> {
            self.sock
                .deadline(|fd| fd.set_read_deadline(d))
                .map_err(|e| ($err)(self, e))
        }
        /// Sets the write deadline.
        pub fn set_write_deadline(&self, d: Option<Instant>) -> io::Result<()> {
            self.sock
                .deadline(|fd| fd.set_write_deadline(d))
                .map_err(|e| ($err)(self, e))
        }
    };
}
pub(crate) use deadline_methods;

/// `Read`/`Write` for a stream type and for a shared reference to it (so one coroutine may read
/// while another writes), through its `sock` and its `err(op, e)` (Go's `OpError`).
macro_rules! stream_io {
    ($t:ty) => {
        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.sock.read(buf).map_err(|e| self.err("read", e))
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.sock
                    .read_vectored(bufs)
                    .map_err(|e| self.err("read", e))
            }
        }
        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.sock.write(buf).map_err(|e| self.err("write", e))
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.sock
                    .write_vectored(bufs)
                    .map_err(|e| self.err("write", e))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                std::io::Read::read_vectored(&mut &*self, bufs)
            }
        }
        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                std::io::Write::write_vectored(&mut &*self, bufs)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use stream_io;
