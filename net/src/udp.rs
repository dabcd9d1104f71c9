//! [`UdpSocket`] (Go's `*net.UDPConn`).
//!
//! What: std-shaped UDP socket whose receives park; one syscall per datagram. An empty
//! datagram is sent and received as `Ok(0)`: it is not EOF.
//!
//! Invariants: addresses cached at creation; errors are `OpError`s with the inner kind.
//!
//! Differences from Go: no `ReadMsgUDP`/control messages.
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::addr::{Addr, ToAddrs};
use crate::dial::Dialer;
use crate::error::{op_error, syscall};
use crate::listen::ListenConfig;
use crate::sock::Sock;

/// A UDP socket (Go's `*net.UDPConn`).
#[derive(Debug)]
pub struct UdpSocket {
    pub(crate) sock: Sock,
    pub(crate) laddr: Option<SocketAddr>,
    pub(crate) raddr: std::sync::Mutex<Option<SocketAddr>>,
}

impl UdpSocket {
    /// Binds to the first address of `addr` that works.
    pub fn bind<A: ToAddrs>(addr: A) -> io::Result<UdpSocket> {
        let addrs = addr
            .to_addrs()
            .map_err(|e| op_error("listen", "udp", None, None, e))?;
        ListenConfig::new().listen_udp_addrs("udp", &addrs)
    }

    pub(crate) fn from_sock(sock: Sock, raddr: Option<SocketAddr>) -> io::Result<UdpSocket> {
        let laddr = sock.local().ok().and_then(|a| a.as_socket());
        Ok(UdpSocket {
            sock,
            laddr,
            raddr: std::sync::Mutex::new(raddr),
        })
    }

    pub(crate) fn dial(net: &'static str, to: SocketAddr, d: &Dialer) -> io::Result<UdpSocket> {
        let err = |e| op_error("dial", net, None, Some(Addr::Udp(to)), e);
        let s = Socket::new(
            Domain::for_address(to),
            Type::DGRAM.nonblocking().cloexec(),
            None,
        )
        .map_err(|e| err(syscall("socket", e)))?;
        if let Some(c) = &d.control {
            c(net, &to.to_string(), socket2::SockRef::from(&s)).map_err(err)?;
        }
        if let Some(l) = d.local_addr {
            s.bind(&l.into()).map_err(|e| err(syscall("bind", e)))?;
        }
        s.connect(&to.into())
            .map_err(|e| err(syscall("connect", e)))?;
        UdpSocket::from_sock(Sock::new(s).map_err(err)?, Some(to))
    }

    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        *self.raddr.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, op: &'static str, to: Option<SocketAddr>, e: io::Error) -> io::Error {
        op_error(
            op,
            "udp",
            self.laddr.map(Addr::Udp),
            to.or(self.peer()).map(Addr::Udp),
            e,
        )
    }

    /// Connects (sets the default destination and filters sources).
    pub fn connect<A: ToAddrs>(&self, addr: A) -> io::Result<()> {
        let addrs = addr.to_addrs().map_err(|e| self.err("dial", None, e))?;
        let mut first = None;
        for a in addrs {
            match self.sock.opt(|s| s.connect(&a.into())) {
                Ok(()) => {
                    *self.raddr.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
                    return Ok(());
                }
                Err(e) => {
                    first.get_or_insert(self.err("dial", Some(a), syscall("connect", e)));
                }
            }
        }
        Err(first.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses")))
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf).map_err(|e| self.err("write", None, e))
    }
    /// Receives one datagram from the connected peer (`Ok(0)`: an empty datagram). An empty
    /// `buf` returns `Ok(0)` at once without consuming a datagram (Go's `Read`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf).map_err(|e| self.err("read", None, e))
    }
    /// Sends one datagram to `to`.
    pub fn send_to<A: ToAddrs>(&self, buf: &[u8], to: A) -> io::Result<usize> {
        let to = *to
            .to_addrs()?
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        self.sock
            .send_to(buf, &to.into())
            .map_err(|e| self.err("write", Some(to), e))
    }
    /// Receives one datagram and its source. An empty `buf` still waits for a datagram and
    /// consumes it (Go's `ReadFrom`).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, a) = self
            .sock
            .recv_from(buf)
            .map_err(|e| self.err("read", None, e))?;
        Ok((
            n,
            a.as_socket()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        ))
    }
    /// Like `recv_from` but leaves the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, a) = self
            .sock
            .peek_from(buf)
            .map_err(|e| self.err("read", None, e))?;
        Ok((
            n,
            a.as_socket()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        ))
    }
    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.laddr.ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
    /// The connected peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer()
            .ok_or_else(|| self.err("getpeername", None, io::ErrorKind::NotConnected.into()))
    }
    /// Closes, waking parked receives and sends.
    pub fn close(&self) -> io::Result<()> {
        self.sock.fd.close().map_err(|e| self.err("close", None, e))
    }
    crate::sock::deadline_methods!(|c: &Self, e| c.err("set", None, e));
    /// std-style per-receive timeout.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(d)
    }
    /// std-style per-send timeout.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(d)
    }
    /// `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_broadcast(on))
            .map_err(|e| self.err("set", None, e))
    }
    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_ttl(ttl))
            .map_err(|e| self.err("set", None, e))
    }
    /// `SO_SNDBUF`.
    pub fn set_send_buffer_size(&self, n: usize) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_send_buffer_size(n))
            .map_err(|e| self.err("set", None, e))
    }
    /// `SO_RCVBUF`.
    pub fn set_recv_buffer_size(&self, n: usize) -> io::Result<()> {
        self.sock
            .opt(|s| s.set_recv_buffer_size(n))
            .map_err(|e| self.err("set", None, e))
    }
    /// A second handle on a `dup`.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        let sock = self
            .sock
            .try_clone()
            .map_err(|e| self.err("dup", None, e))?;
        Ok(UdpSocket {
            sock,
            laddr: self.laddr,
            raddr: std::sync::Mutex::new(self.peer()),
        })
    }
}
