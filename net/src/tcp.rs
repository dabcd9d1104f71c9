//! [`TcpListener`] and [`TcpStream`] (Go's `*net.TCPListener` and `*net.TCPConn`).
//!
//! What: std-shaped constructors and methods whose blocking calls park the calling coroutine
//! (or block a plain thread), plus Go's deadlines and `close`. `Read`/`Write` are
//! implemented for both `TcpStream` and `&TcpStream`, so one coroutine can read while another
//! writes on the same connection.
//!
//! Invariants: addresses are cached at creation (Go's `netFD.laddr/raddr`) and used in error
//! texts; every error is an `OpError` with the inner error's kind. `close()` wakes every
//! parked operation; drop closes.
//!
//! Differences from std: `close`, deadlines and `Conn` are extra; `connect` takes
//! [`ToAddrs`] (names resolved off the worker). From Go: methods follow std naming.
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Type};

use crate::addr::{Addr, ToAddrs};
use crate::dial::{Cancel, Dialer};
use crate::error::op_error;
use crate::listen::ListenConfig;
use crate::sock::Sock;

fn sa(a: &SockAddr) -> Option<SocketAddr> {
    a.as_socket()
}

/// A TCP listening socket (Go's `*net.TCPListener`).
#[derive(Debug)]
pub struct TcpListener {
    pub(crate) sock: Sock,
    pub(crate) laddr: SocketAddr,
}

/// A TCP connection (Go's `*net.TCPConn`).
#[derive(Debug)]
pub struct TcpStream {
    pub(crate) sock: Sock,
    pub(crate) laddr: Option<SocketAddr>,
    pub(crate) raddr: Option<SocketAddr>,
}

impl TcpListener {
    /// Binds and listens on the first address of `addr` that works (backlog: somaxconn).
    pub fn bind<A: ToAddrs>(addr: A) -> io::Result<TcpListener> {
        let addrs = addr
            .to_addrs()
            .map_err(|e| op_error("listen", "tcp", None, None, e))?;
        ListenConfig::new().listen_tcp_addrs("tcp", &addrs)
    }

    pub(crate) fn from_sock(sock: Sock) -> io::Result<TcpListener> {
        let laddr = sa(&sock.local()?).ok_or_else(|| io::Error::other("not an IP socket"))?;
        Ok(TcpListener { sock, laddr })
    }

    // Cold and out of line: the error path's address temporaries stay out of the frames of
    // the hot read and write paths (a smaller stack footprint per wake-up).
    #[cold]
    #[inline(never)]
    fn err(&self, op: &'static str, e: io::Error) -> io::Error {
        op_error(op, "tcp", None, Some(Addr::Tcp(self.laddr)), e)
    }

    /// Waits for a connection. `ECONNABORTED` is retried; `EMFILE`/`ENFILE` come back as
    /// errors at once (see [`crate::serve`] for backing off).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, peer) = self.sock.accept().map_err(|e| self.err("accept", e))?;
        let raddr = sa(&peer);
        let sock = Sock::new_tcp(s).map_err(|e| self.err("accept", e))?;
        let laddr = sock.local().ok().and_then(|a| sa(&a));
        let peer = raddr.unwrap_or(self.laddr);
        Ok((TcpStream { sock, laddr, raddr }, peer))
    }

    /// An endless iterator of accepted connections (std's `incoming`).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The bound address (with the port the kernel chose for `:0`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.laddr)
    }

    /// Closes: parked `accept`s fail with "use of closed network connection".
    pub fn close(&self) -> io::Result<()> {
        self.sock.fd.close().map_err(|e| self.err("close", e))
    }

    /// Sets the deadline for `accept` (Go's `TCPListener.SetDeadline`).
    pub fn set_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        self.sock.fd.incref().map_err(|e| self.err("set", e))?;
        self.sock.fd.set_read_deadline(d);
        Ok(())
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_ttl(ttl))
            .map_err(|e| self.err("set", e))
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.opt(|s| s.ttl()).map_err(|e| self.err("get", e))
    }

    /// Runs `f` on the socket2 view of the listening socket (any other option).
    pub fn with_socket<R>(
        &self,
        f: impl FnOnce(socket2::SockRef<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        self.sock.opt(f)
    }
}

impl TcpStream {
    /// Connects to the first address of `addr` that accepts (Go's `net.Dial("tcp", ..)`):
    /// in order, or, if the list holds both IPv4 and IPv6 addresses, with Happy Eyeballs (the
    /// other family joins after 300 ms; see [`Dialer::fallback_delay`]).
    pub fn connect<A: ToAddrs>(addr: A) -> io::Result<TcpStream> {
        let addrs = addr
            .to_addrs()
            .map_err(|e| op_error("dial", "tcp", None, None, e))?;
        Dialer::new().dial_tcp_addrs("tcp", &addrs, None, None)
    }

    /// Connects with a timeout (std's `connect_timeout`); a huge timeout means none.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let d = Dialer::new().timeout(timeout);
        d.dial_tcp_addrs("tcp", &[*addr], d.overall_deadline(), None)
    }

    pub(crate) fn connect_one(
        addr: SocketAddr,
        deadline: Option<Instant>,
        d: &Dialer,
        net: &'static str,
        cancel: Option<&Cancel>,
    ) -> io::Result<TcpStream> {
        let err = |e| {
            op_error(
                "dial",
                net,
                d.local_addr.map(Addr::Tcp),
                Some(Addr::Tcp(addr)),
                e,
            )
        };
        let s = socket2::Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            None,
        )
        .map_err(|e| err(crate::error::syscall("socket", e)))?;
        if let Some(c) = &d.control {
            c(net, &addr.to_string(), socket2::SockRef::from(&s)).map_err(err)?;
        }
        if let Some(l) = d.local_addr {
            s.bind(&l.into())
                .map_err(|e| err(crate::error::syscall("bind", e)))?;
        }
        let sock = Sock::new_tcp(s).map_err(err)?;
        let sock = match cancel {
            None => sock.connect(&addr.into(), deadline).map(|()| sock),
            Some(c) => c.connect(sock, &addr.into(), deadline),
        }
        .map_err(err)?;
        let laddr = sock.local().ok().and_then(|a| sa(&a));
        let stream = TcpStream {
            sock,
            laddr,
            raddr: Some(addr),
        };
        if let Some(k) = d.keep_alive {
            let _ = stream.set_keepalive(Some(k));
        }
        Ok(stream)
    }

    // Cold and out of line: the error path's address temporaries stay out of the frames of
    // the hot read and write paths (a smaller stack footprint per wake-up).
    #[cold]
    #[inline(never)]
    fn err(&self, op: &'static str, e: io::Error) -> io::Error {
        op_error(
            op,
            "tcp",
            self.laddr.map(Addr::Tcp),
            self.raddr.map(Addr::Tcp),
            e,
        )
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.laddr
            .ok_or_else(|| self.err("getsockname", io::ErrorKind::NotConnected.into()))
    }

    /// The peer address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.raddr
            .ok_or_else(|| self.err("getpeername", io::ErrorKind::NotConnected.into()))
    }

    /// Shuts down one or both directions (`Write` sends FIN; reads go on).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how).map_err(|e| self.err("shutdown", e))
    }

    /// A second handle on a `dup` of this socket.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        let sock = self.sock.try_clone().map_err(|e| self.err("dup", e))?;
        Ok(TcpStream {
            sock,
            laddr: self.laddr,
            raddr: self.raddr,
        })
    }

    /// Closes: parked reads and writes fail with "use of closed network connection"; a
    /// second close is that error too.
    pub fn close(&self) -> io::Result<()> {
        self.sock.fd.close().map_err(|e| self.err("close", e))
    }

    crate::sock::deadline_methods!(|c: &Self, e| c.err("set", e));

    /// std-style per-read timeout (each read gets a fresh deadline); zero is an error.
    ///
    /// It shares the read deadline with [`TcpStream::set_read_deadline`]: while a timeout is
    /// set, each read replaces the deadline with now + timeout, and `None` clears the
    /// deadline too. Use one of the two styles per connection.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(d)
    }
    /// std-style per-write timeout.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(d)
    }
    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.sock.read_timeout())
    }
    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.sock.write_timeout())
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_nodelay(on))
            .map_err(|e| self.err("set", e))
    }
    /// `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.sock
            .opt(|s| s.nodelay())
            .map_err(|e| self.err("get", e))
    }
    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_ttl(ttl))
            .map_err(|e| self.err("set", e))
    }
    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.opt(|s| s.ttl()).map_err(|e| self.err("get", e))
    }
    /// `SO_KEEPALIVE` with the idle time (`None` turns it off).
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        self.sock
            .opt(|s| match idle {
                None => s.set_keepalive(false),
                Some(t) => {
                    s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(t).with_interval(t))
                }
            })
            .map_err(|e| self.err("set", e))
    }
    /// `SO_LINGER` (`Some(0)` makes close send RST).
    pub fn set_linger(&self, l: Option<Duration>) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_linger(l))
            .map_err(|e| self.err("set", e))
    }
    /// `SO_SNDBUF`.
    pub fn set_send_buffer_size(&self, n: usize) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_send_buffer_size(n))
            .map_err(|e| self.err("set", e))
    }
    /// `SO_RCVBUF`.
    pub fn set_recv_buffer_size(&self, n: usize) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_recv_buffer_size(n))
            .map_err(|e| self.err("set", e))
    }
    /// `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.sock
            .opt(|s| s.take_error())
            .map_err(|e| self.err("get", e))
    }
    /// Runs `f` on the socket2 view (any other option).
    pub fn with_socket<R>(
        &self,
        f: impl FnOnce(socket2::SockRef<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        self.sock.opt(f)
    }
}

crate::sock::stream_io!(TcpStream);
