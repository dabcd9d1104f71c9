//! [`Fd`]: a non-blocking descriptor whose reads and writes park the coroutine (Go's
//! `internal/poll.FD`; its lock word, Go's `fdMutex`, is `FdMutex` in fdmutex.rs).
//!
//! `Fd` owns the descriptor, registers it with the netpoller, serializes readers among
//! themselves and writers among themselves (so one coroutine may read while another writes,
//! and concurrent writes never interleave their bytes), and counts operations in flight so
//! that [`Fd::close`] from another coroutine wakes every waiter with "use of closed network
//! connection" but releases the fd number only after the last operation has left its
//! syscall (so a reused fd number is never read by mistake).
//!
//! Writes to sockets use `send`/`sendmsg` with `MSG_NOSIGNAL`, so a peer that went away gives
//! `EPIPE` (BrokenPipe), never a SIGPIPE.
//!
//! Deadlines (as the gort issue asks, unlike Go's `prepareRead`): the syscall is always tried
//! first, so data already in the kernel is returned after a deadline; the deadline fails only
//! an operation that would wait.
//!
//! Short reads on TCP streams ([`Fd::new_tcp`]; Go has no counterpart, tokio does the same):
//! a read that returned fewer bytes than asked emptied the receive queue, so the next read
//! waits for a new readiness edge before its syscall instead of making one that fails with
//! `EAGAIN` (a request/response connection then costs two syscalls per round trip, not
//! three). Invariant: readiness is consumed before the read syscall, and every byte that
//! arrives after that raises an edge. A short read proves nothing once the descriptor
//! reported urgent data, end of input or an error (the read stopped at the urgent mark, or a
//! pending EOF/error comes next, with no edge to follow), so the poller's sticky flag turns
//! the shortcut off (`Registration::short_read_drains`). Waits on a pending deadline or close
//! fall back to the syscall first, so the deadline rule above still holds.
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use crate::fdmutex::{Closed, FdMutex, Kind};
use crate::netpoll::{closed_error, Registration};

/// A registered non-blocking descriptor; see the module docs.
pub struct Fd {
    fd: RawFd,
    reg: Registration,
    mu: FdMutex,
    /// Sockets are written with `send(MSG_NOSIGNAL)`: a write to a closed peer is an
    /// `EPIPE` error, never a SIGPIPE that kills the process.
    is_socket: bool,
    /// A TCP stream ([`Fd::new_tcp`]): a read that returns fewer bytes than asked emptied the
    /// receive queue (until urgent data, EOF or an error shows up, see
    /// `Registration::short_read_drains`).
    short_read_drains: bool,
    /// The last read was short on a `short_read_drains` fd: the next read waits for a new
    /// readiness edge before its syscall instead of making one that fails with `EAGAIN`
    /// (one syscall fewer per request/response round trip; tokio does the same). Only
    /// touched under the read lock, whose acquire/release orders successive readers, so
    /// Relaxed accesses suffice.
    drained: AtomicBool,
    /// Operations on this fd that completed without waiting since the last wait on it (either
    /// direction): the cooperative budget (see `Fd::spend`). Readers and writers update it
    /// under different locks, so concurrent updates may lose counts; it is a heuristic.
    streak: AtomicU32,
}

/// Operations on one fd that may complete in a row without waiting before the coroutine
/// yields once (tokio's coop budget; Go gets the same fairness from preemption).
pub const IO_BUDGET: u32 = 128;

/// Holds a read, write or plain reference on an [`Fd`]; released on drop.
pub struct FdGuard<'a> {
    fd: &'a Fd,
    kind: Kind,
}

impl Drop for FdGuard<'_> {
    fn drop(&mut self) {
        self.fd.release(self.kind);
    }
}

fn cvt_isize(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

mod sys;

fn is_socket(fd: RawFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`; ENOTSOCK for other fds.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        ) == 0
    }
}

/// Sets `O_NONBLOCK` and `FD_CLOEXEC` on `fd`.
pub fn set_nonblocking_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a caller-provided fd with valid commands; errors are checked.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        let fdfl = libc::fcntl(fd, libc::F_GETFD);
        if fdfl < 0 || libc::fcntl(fd, libc::F_SETFD, fdfl | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Fd {
    /// Takes ownership of `fd`, makes it non-blocking and close-on-exec, and registers it.
    pub fn new(fd: OwnedFd) -> io::Result<Fd> {
        set_nonblocking_cloexec(fd.as_raw_fd())?;
        let reg = Registration::new(fd.as_raw_fd())?;
        let is_socket = is_socket(fd.as_raw_fd());
        Ok(Fd {
            fd: fd.into_raw_fd(),
            reg,
            mu: FdMutex::default(),
            is_socket,
            short_read_drains: false,
            drained: AtomicBool::new(false),
            streak: AtomicU32::new(0),
        })
    }

    /// Like [`Fd::new`], for a connected TCP socket. A read on it that returns fewer bytes
    /// than asked proves the kernel's receive queue was empty, so the next read parks until
    /// new data raises a readiness edge instead of first making a syscall that would fail
    /// with `EAGAIN`. Do not use it for other descriptors: a UDP read returns one datagram,
    /// a Unix stream read stops at credential and descriptor boundaries, and a tty read stops
    /// at a line end, each with bytes left behind and no new edge to come.
    pub fn new_tcp(fd: OwnedFd) -> io::Result<Fd> {
        let mut f = Fd::new(fd)?;
        f.short_read_drains = f.is_socket;
        Ok(f)
    }

    /// True for an fd made by [`Fd::new_tcp`].
    pub fn is_tcp(&self) -> bool {
        self.short_read_drains
    }

    /// A non-blocking, close-on-exec pipe: (read end, write end).
    pub fn pipe() -> io::Result<(Fd, Fd)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid 2-element array for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh fds that we own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Fd::new(r)?, Fd::new(w)?))
    }

    /// The netpoller registration (deadlines, readiness waits).
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    fn acquire(&self, kind: Kind) -> io::Result<FdGuard<'_>> {
        match self.mu.acquire(kind) {
            Ok(()) => Ok(FdGuard { fd: self, kind }),
            Err(Closed) => Err(closed_error()),
        }
    }

    fn release(&self, kind: Kind) {
        if self.mu.release(kind) {
            self.destroy();
        }
    }

    /// Takes the read lock (one reader at a time) plus a reference.
    pub fn lock_read(&self) -> io::Result<FdGuard<'_>> {
        self.acquire(Kind::Read)
    }

    /// Takes the write lock (one writer at a time) plus a reference.
    pub fn lock_write(&self) -> io::Result<FdGuard<'_>> {
        self.acquire(Kind::Write)
    }

    /// Takes a plain reference (for syscalls such as setsockopt).
    pub fn incref(&self) -> io::Result<FdGuard<'_>> {
        self.acquire(Kind::Ref)
    }

    fn destroy(&self) {
        // Deregister before close(2): afterwards the number may be reused by another open.
        self.reg.deregister();
        // SAFETY: we own `fd`; `FdMutex` reports "destroy" to exactly one party, once `CLOSED`
        // is set and no operation holds a reference, so nobody uses the number any more.
        unsafe { libc::close(self.fd) };
    }

    /// Closes: wakes every parked operation with "use of closed network connection", and
    /// closes the descriptor once no operation is in flight. A second close is an error.
    pub fn close(&self) -> io::Result<()> {
        let destroy_now = self.mu.close().ok_or_else(closed_error)?;
        self.reg.close();
        if destroy_now {
            self.destroy();
        }
        Ok(())
    }

    /// True once [`Fd::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.mu.is_closed()
    }

    /// Runs a read-side syscall `f` under the read lock, parking on `EAGAIN` until readable.
    pub fn read_with<R>(&self, f: impl FnMut(RawFd) -> io::Result<R>) -> io::Result<R> {
        let r = self.read_with_locked(f);
        self.spend();
        r
    }

    fn read_with_locked<R>(&self, mut f: impl FnMut(RawFd) -> io::Result<R>) -> io::Result<R> {
        let _g = self.lock_read()?;
        // `f` may peek or read records, and its waits consume readiness: the drained hint of
        // the last plain read no longer describes the queue.
        // Relaxed: under the read lock (see `drained`).
        if self.drained.load(Ordering::Relaxed) {
            self.drained.store(false, Ordering::Relaxed);
        }
        loop {
            match f(self.fd) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_read()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// Runs a write-side syscall `f` under the write lock, parking on `EAGAIN`.
    pub fn write_with<R>(&self, f: impl FnMut(RawFd) -> io::Result<R>) -> io::Result<R> {
        let r = self.write_with_locked(f);
        self.spend();
        r
    }

    fn write_with_locked<R>(&self, mut f: impl FnMut(RawFd) -> io::Result<R>) -> io::Result<R> {
        let _g = self.lock_write()?;
        loop {
            match f(self.fd) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_write()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    // The waits of the operations above: each one ends a streak of the cooperative budget.
    // Relaxed: a heuristic counter; it publishes nothing (see `streak`).
    // Each also leaves the poller a hint to prefetch this `Fd` (and what follows it, such as
    // the rest of a connection object) with the woken coroutine's stack.
    fn wait_read(&self) -> io::Result<()> {
        self.before_wait();
        self.reg.wait_read()
    }
    fn wait_read_drained(&self) -> io::Result<()> {
        self.before_wait();
        self.reg.wait_read_drained()
    }
    fn wait_write(&self) -> io::Result<()> {
        self.before_wait();
        self.reg.wait_write()
    }
    #[inline]
    fn before_wait(&self) {
        self.streak.store(0, Ordering::Relaxed);
        self.reg.set_hint(self as *const Fd as usize);
    }

    /// The cooperative budget, after an operation (its lock released): the `IO_BUDGET`-th
    /// operation since the last wait on this fd yields the coroutine once, so a peer that
    /// keeps this fd always ready (a fast sender, a burst of connections) cannot keep the
    /// worker from the other coroutines pinned to it. Plain threads never yield here (the
    /// kernel schedules them).
    #[inline]
    fn spend(&self) {
        // Relaxed: as in the waits above.
        let n = self.streak.load(Ordering::Relaxed) + 1;
        if n < IO_BUDGET {
            self.streak.store(n, Ordering::Relaxed);
        } else {
            self.streak.store(0, Ordering::Relaxed);
            crate::spawn::yield_if_coroutine();
        }
    }

    /// Reads into `buf`; `Ok(0)` at EOF or for an empty `buf`.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            let _g = self.incref()?;
            return Ok(0);
        }
        let len = buf.len();
        let sock = self.is_socket;
        self.read_stream(len, |fd| {
            // SAFETY: `buf` is valid for `buf.len()` writable bytes.
            unsafe {
                if sock {
                    sys::recv(fd, buf.as_mut_ptr(), len)
                } else {
                    sys::read(fd, buf.as_mut_ptr(), len)
                }
            }
        })
    }

    /// A plain read of up to `len` bytes by `f`, with the short-read shortcut (see
    /// `drained`) on TCP sockets.
    fn read_stream(
        &self,
        len: usize,
        f: impl FnMut(RawFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let r = self.read_stream_locked(len, f);
        self.spend();
        r
    }

    fn read_stream_locked(
        &self,
        len: usize,
        mut f: impl FnMut(RawFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let _g = self.lock_read()?;
        // Relaxed: under the read lock (see `drained`).
        if self.drained.load(Ordering::Relaxed) {
            self.drained.store(false, Ordering::Relaxed);
            self.wait_read_drained()?;
        }
        loop {
            match f(self.fd) {
                Ok(n) => {
                    if self.short_read_drains && n > 0 && n < len && self.reg.short_read_drains() {
                        self.drained.store(true, Ordering::Relaxed);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_read()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Vectored read.
    pub fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = bufs.iter().take(1024).map(|b| b.len()).sum();
        self.read_stream(len, |fd| {
            // SAFETY: `IoSliceMut` is ABI-compatible with `iovec` on Unix (documented by std),
            // and each slice is valid for writes of its length.
            cvt_isize(unsafe {
                libc::readv(
                    fd,
                    bufs.as_ptr().cast(),
                    bufs.len().min(1024) as libc::c_int,
                )
            })
        })
    }

    /// Writes all of `buf` (continuing after partial writes). If an error happens after some
    /// bytes went out, returns that count; the error comes back on the next call.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            let _g = self.incref()?;
            return Ok(0);
        }
        let r = self.write_all_locked(buf);
        self.spend();
        r
    }

    fn write_all_locked(&self, buf: &[u8]) -> io::Result<usize> {
        let _g = self.lock_write()?;
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            let r = self.write_once(rest);
            match r {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.wait_write() {
                        return if done > 0 { Ok(done) } else { Err(e) };
                    }
                }
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            }
        }
        Ok(done)
    }

    fn write_once(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` readable bytes.
        unsafe {
            if self.is_socket {
                sys::send(self.fd, buf.as_ptr(), buf.len(), libc::MSG_NOSIGNAL)
            } else {
                sys::write(self.fd, buf.as_ptr(), buf.len())
            }
        }
    }

    /// Vectored write (one syscall's worth; may be partial).
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let is_socket = self.is_socket;
        self.write_with(|fd| {
            let iov = bufs.as_ptr() as *mut libc::iovec;
            let n = bufs.len().min(1024);
            if is_socket {
                // SAFETY: a zeroed msghdr is valid; `IoSlice` is ABI-compatible with `iovec`
                // on Unix (documented by std), and sendmsg only reads through `msg_iov`.
                cvt_isize(unsafe {
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = iov;
                    msg.msg_iovlen = n as _;
                    libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
                })
            } else {
                // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (documented by std).
                cvt_isize(unsafe { libc::writev(fd, iov, n as libc::c_int) })
            }
        })
    }

    /// Sets both deadlines (`None` clears).
    pub fn set_deadline(&self, d: Option<Instant>) {
        self.reg.set_deadline(d)
    }
    /// Sets the read deadline.
    pub fn set_read_deadline(&self, d: Option<Instant>) {
        self.reg.set_read_deadline(d)
    }
    /// Sets the write deadline.
    pub fn set_write_deadline(&self, d: Option<Instant>) {
        self.reg.set_write_deadline(d)
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl std::fmt::Debug for Fd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fd").field("fd", &self.fd).finish()
    }
}

impl Read for &Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Fd::read(self, buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        Fd::read_vectored(self, bufs)
    }
}

impl Write for &Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Fd::write(self, buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Fd::write_vectored(self, bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Fd::read(self, buf)
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Fd::write(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
