//! [`UnixListener`], [`UnixStream`], [`UnixDatagram`] (Go's `*net.UnixListener` and
//! `*net.UnixConn`).
//!
//! What: Unix-domain stream and datagram sockets on the netpoller, std-shaped.
//!
//! Invariants: a listener that bound a path removes the socket file when it is closed (or
//! dropped), as Go's `UnixListener.Close` does with `unlink` on; abstract (`@name`) paths
//! are not files and are never unlinked. Stream writes use `MSG_NOSIGNAL`.
//!
//! Differences from Go: no `SetUnlinkOnClose`; no credentials/fd passing.
use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::addr::Addr;
use crate::error::{op_error, syscall};
use crate::listen::ListenConfig;
use crate::sock::Sock;

fn sockaddr(path: &str) -> io::Result<SockAddr> {
    if let Some(name) = path.strip_prefix('@') {
        let mut v = vec![0u8];
        v.extend_from_slice(name.as_bytes());
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(&v));
        return SockAddr::unix(p);
    }
    SockAddr::unix(path)
}

/// The address as Go prints it: the path, `@name` for the abstract namespace, or nothing
/// for an unnamed socket.
fn path_of(a: &SockAddr, net: &'static str) -> Addr {
    use std::os::unix::ffi::OsStrExt;
    let p = match (a.as_pathname(), a.as_abstract_namespace()) {
        (Some(p), _) => Some(p.to_path_buf()),
        (None, Some(name)) => {
            let mut v = b"@".to_vec();
            v.extend_from_slice(name);
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(&v)))
        }
        (None, None) => None,
    };
    Addr::Unix(p, net)
}

fn new_sock(ty: Type) -> io::Result<Socket> {
    Socket::new(Domain::UNIX, ty.nonblocking().cloexec(), None).map_err(|e| syscall("socket", e))
}

/// A Unix stream listener; removes its socket file on close.
#[derive(Debug)]
pub struct UnixListener {
    sock: Sock,
    /// The bound name (`@name` for the abstract namespace).
    name: PathBuf,
    /// The socket file to remove on close (`None` for an abstract name).
    path: Option<PathBuf>,
    unlinked: AtomicBool,
}

/// A Unix stream connection.
#[derive(Debug)]
pub struct UnixStream {
    sock: Sock,
    laddr: Addr,
    raddr: Addr,
}

/// A Unix datagram socket.
#[derive(Debug)]
pub struct UnixDatagram {
    sock: Sock,
    laddr: Addr,
}

impl UnixListener {
    /// Binds and listens on `path` (`@name` for the abstract namespace).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::bind_with(&path.as_ref().to_string_lossy(), &ListenConfig::new())
    }

    pub(crate) fn bind_with(path: &str, cfg: &ListenConfig) -> io::Result<UnixListener> {
        let err = |e| {
            op_error(
                "listen",
                "unix",
                None,
                Some(Addr::Unix(Some(path.into()), "unix")),
                e,
            )
        };
        let s = new_sock(Type::STREAM).map_err(err)?;
        if let Some(c) = &cfg.control {
            c("unix", path, socket2::SockRef::from(&s)).map_err(err)?;
        }
        s.bind(&sockaddr(path).map_err(err)?)
            .map_err(|e| err(syscall("bind", e)))?;
        let file = (!path.starts_with('@')).then(|| PathBuf::from(path));
        if let Err(e) = s.listen(cfg.backlog) {
            if let Some(f) = &file {
                let _ = std::fs::remove_file(f);
            }
            return Err(err(syscall("listen", e)));
        }
        Ok(UnixListener {
            sock: Sock::new(s).map_err(err)?,
            name: PathBuf::from(path),
            path: file,
            unlinked: AtomicBool::new(false),
        })
    }

    fn addr(&self) -> Addr {
        Addr::Unix(Some(self.name.clone()), "unix")
    }

    // Cold and out of line: the error path's address temporaries stay out of the frames of
    // the hot read and write paths (a smaller stack footprint per wake-up).
    #[cold]
    #[inline(never)]
    fn err(&self, op: &'static str, e: io::Error) -> io::Error {
        op_error(op, "unix", None, Some(self.addr()), e)
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(UnixStream, Addr)> {
        let (s, peer) = self.sock.accept().map_err(|e| self.err("accept", e))?;
        let sock = Sock::new(s).map_err(|e| self.err("accept", e))?;
        let raddr = path_of(&peer, "unix");
        Ok((
            UnixStream {
                sock,
                laddr: self.addr(),
                raddr: raddr.clone(),
            },
            raddr,
        ))
    }

    /// Endless iterator of accepted connections.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UnixStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The bound path.
    pub fn local_addr(&self) -> Addr {
        self.addr()
    }

    /// Deadline for `accept`.
    pub fn set_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        self.sock.fd.incref().map_err(|e| self.err("set", e))?;
        self.sock.fd.set_read_deadline(d);
        Ok(())
    }

    /// Closes (waking parked accepts) and removes the socket file.
    pub fn close(&self) -> io::Result<()> {
        let r = self.sock.fd.close().map_err(|e| self.err("close", e));
        self.unlink();
        r
    }

    fn unlink(&self) {
        if let Some(p) = &self.path {
            if !self.unlinked.swap(true, Ordering::SeqCst) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        self.unlink();
    }
}

impl UnixStream {
    /// Connects to `path`. If the listener's backlog is full, fails at once with `connect:
    /// resource temporarily unavailable` (kind `WouldBlock`: try again later), as Go does:
    /// a Unix connect never waits for the listener, so there is nothing to park on.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        UnixStream::connect_deadline(&path.as_ref().to_string_lossy(), None)
    }

    pub(crate) fn connect_deadline(
        path: &str,
        deadline: Option<Instant>,
    ) -> io::Result<UnixStream> {
        let raddr = Addr::Unix(Some(path.into()), "unix");
        let err = |e| op_error("dial", "unix", None, Some(raddr.clone()), e);
        let sock = Sock::new(new_sock(Type::STREAM).map_err(err)?).map_err(err)?;
        sock.connect(&sockaddr(path).map_err(err)?, deadline)
            .map_err(err)?;
        let laddr = sock
            .local()
            .map(|a| path_of(&a, "unix"))
            .unwrap_or(Addr::Unix(None, "unix"));
        Ok(UnixStream { sock, laddr, raddr })
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        let mk = |s| -> io::Result<UnixStream> {
            Ok(UnixStream {
                sock: Sock::new(s)?,
                laddr: Addr::Unix(None, "unix"),
                raddr: Addr::Unix(None, "unix"),
            })
        };
        Ok((mk(a)?, mk(b)?))
    }

    // Cold and out of line: the error path's address temporaries stay out of the frames of
    // the hot read and write paths (a smaller stack footprint per wake-up).
    #[cold]
    #[inline(never)]
    fn err(&self, op: &'static str, e: io::Error) -> io::Error {
        op_error(
            op,
            "unix",
            Some(self.laddr.clone()),
            Some(self.raddr.clone()),
            e,
        )
    }

    /// Local address.
    pub fn local_addr(&self) -> Addr {
        self.laddr.clone()
    }
    /// Peer address.
    pub fn peer_addr(&self) -> Addr {
        self.raddr.clone()
    }
    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how).map_err(|e| self.err("shutdown", e))
    }
    /// Closes, waking parked operations.
    pub fn close(&self) -> io::Result<()> {
        self.sock.fd.close().map_err(|e| self.err("close", e))
    }
    crate::sock::deadline_methods!(|c: &Self, e| c.err("set", e));
    /// A second handle on a `dup`.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        let sock = self.sock.try_clone().map_err(|e| self.err("dup", e))?;
        Ok(UnixStream {
            sock,
            laddr: self.laddr.clone(),
            raddr: self.raddr.clone(),
        })
    }
}

crate::sock::stream_io!(UnixStream);

impl UnixDatagram {
    /// Binds to `path`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let p = path.as_ref().to_string_lossy().into_owned();
        let err = |e| {
            op_error(
                "listen",
                "unixgram",
                None,
                Some(Addr::Unix(Some(p.clone().into()), "unixgram")),
                e,
            )
        };
        let s = new_sock(Type::DGRAM).map_err(err)?;
        s.bind(&sockaddr(&p).map_err(err)?)
            .map_err(|e| err(syscall("bind", e)))?;
        let laddr = Addr::Unix(Some(p.clone().into()), "unixgram");
        Ok(UnixDatagram {
            sock: Sock::new(s).map_err(err)?,
            laddr,
        })
    }
    /// An unbound socket.
    pub fn unbound() -> io::Result<UnixDatagram> {
        let s = new_sock(Type::DGRAM)?;
        Ok(UnixDatagram {
            sock: Sock::new(s)?,
            laddr: Addr::Unix(None, "unixgram"),
        })
    }
    /// A connected pair.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM.nonblocking().cloexec(), None)?;
        let mk = |s| -> io::Result<UnixDatagram> {
            Ok(UnixDatagram {
                sock: Sock::new(s)?,
                laddr: Addr::Unix(None, "unixgram"),
            })
        };
        Ok((mk(a)?, mk(b)?))
    }
    fn err(&self, op: &'static str, to: Option<&Path>, e: io::Error) -> io::Error {
        op_error(
            op,
            "unixgram",
            Some(self.laddr.clone()),
            to.map(|p| Addr::Unix(Some(p.into()), "unixgram")),
            e,
        )
    }
    /// Sets the default destination.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let p = path.as_ref();
        let a = sockaddr(&p.to_string_lossy()).map_err(|e| self.err("dial", Some(p), e))?;
        self.sock
            .opt(|s| s.connect(&a))
            .map_err(|e| self.err("dial", Some(p), syscall("connect", e)))
    }
    /// Sends one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf).map_err(|e| self.err("write", None, e))
    }
    /// Receives one datagram (`Ok(0)`: an empty datagram, not EOF). An empty `buf` returns
    /// `Ok(0)` at once without consuming a datagram (Go's `Read`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf).map_err(|e| self.err("read", None, e))
    }
    /// Sends one datagram to `path`.
    pub fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let p = path.as_ref();
        let a = sockaddr(&p.to_string_lossy()).map_err(|e| self.err("write", Some(p), e))?;
        self.sock
            .send_to(buf, &a)
            .map_err(|e| self.err("write", Some(p), e))
    }
    /// Receives one datagram and its source. An empty `buf` still waits for a datagram and
    /// consumes it (Go's `ReadFrom`).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Addr)> {
        let (n, a) = self
            .sock
            .recv_from(buf)
            .map_err(|e| self.err("read", None, e))?;
        Ok((n, path_of(&a, "unixgram")))
    }
    /// Local address.
    pub fn local_addr(&self) -> Addr {
        self.laddr.clone()
    }
    /// Closes, waking parked operations.
    pub fn close(&self) -> io::Result<()> {
        self.sock.fd.close().map_err(|e| self.err("close", None, e))
    }
    crate::sock::deadline_methods!(|c: &Self, e| c.err("set", None, e));
    pub(crate) fn peer_addr_opt(&self) -> Addr {
        self.sock
            .peer()
            .map(|a| path_of(&a, "unixgram"))
            .unwrap_or(Addr::Unix(None, "unixgram"))
    }
}
