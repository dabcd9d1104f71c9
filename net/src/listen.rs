//! Listening: [`ListenConfig`], [`listen`], [`listen_packet`] (Go's `net.ListenConfig`,
//! `net.Listen`, `net.ListenPacket`).
//!
//! What: creates the socket with socket2 (`SOCK_NONBLOCK|SOCK_CLOEXEC` from birth), sets
//! `SO_REUSEADDR` (as Go does for TCP listeners), optional `SO_REUSEPORT`, runs the control
//! hook, binds and listens with backlog `somaxconn` (4096 request; the kernel caps it).
//!
//! Invariants: an empty host (`":8080"`) on `tcp`/`udp` binds `[::]` with `IPV6_V6ONLY` off
//! (dual-stack), falling back to `0.0.0.0` where IPv6 is unavailable; `tcp4` binds
//! `0.0.0.0`, `tcp6` binds `[::]` v6-only. Port 0 picks a free port.
//!
//! Differences from Go: `listen_packet` returns `Box<dyn PacketConn>`-less concrete
//! `UdpSocket` or `UnixDatagram` via [`PacketSocket`].
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Socket, Type};

use crate::addr::{resolve, Addr};
use crate::conn::Listener;
use crate::dial::{parse_network, Control, Proto};
use crate::error::{op_error, syscall};
use crate::sock::Sock;
use crate::tcp::TcpListener;
use crate::udp::UdpSocket;
use crate::unix::{UnixDatagram, UnixListener};

/// Options for listening (Go's `net.ListenConfig`).
#[derive(Clone)]
pub struct ListenConfig {
    pub(crate) backlog: i32,
    pub(crate) reuse_port: bool,
    pub(crate) control: Option<Control>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            backlog: 4096,
            reuse_port: false,
            control: None,
        }
    }
}

impl std::fmt::Debug for ListenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenConfig")
            .field("backlog", &self.backlog)
            .field("reuse_port", &self.reuse_port)
            .finish()
    }
}

/// A packet socket from [`listen_packet`].
#[derive(Debug)]
pub enum PacketSocket {
    /// `udp`, `udp4`, `udp6`.
    Udp(UdpSocket),
    /// `unixgram`.
    Unix(UnixDatagram),
}

impl ListenConfig {
    /// Defaults: backlog 4096, no `SO_REUSEPORT`, no hook.
    pub fn new() -> ListenConfig {
        ListenConfig::default()
    }
    /// The `listen(2)` backlog.
    pub fn backlog(mut self, n: i32) -> ListenConfig {
        self.backlog = n;
        self
    }
    /// `SO_REUSEPORT`.
    pub fn reuse_port(mut self, on: bool) -> ListenConfig {
        self.reuse_port = on;
        self
    }
    /// Hook that sees each raw socket before bind (Go's `ListenConfig.Control`).
    pub fn control(
        mut self,
        f: impl Fn(&str, &str, socket2::SockRef<'_>) -> io::Result<()> + Send + Sync + 'static,
    ) -> ListenConfig {
        self.control = Some(Arc::new(f));
        self
    }

    pub(crate) fn ip_socket(
        &self,
        net: &'static str,
        a: SocketAddr,
        ty: Type,
        dual: bool,
    ) -> io::Result<Socket> {
        let s = Socket::new(Domain::for_address(a), ty.nonblocking().cloexec(), None)
            .map_err(|e| syscall("socket", e))?;
        if a.is_ipv6() {
            s.set_only_v6(!dual).map_err(|e| syscall("setsockopt", e))?;
        }
        if ty == Type::STREAM {
            s.set_reuse_address(true)
                .map_err(|e| syscall("setsockopt", e))?;
        }
        if self.reuse_port {
            s.set_reuse_port(true)
                .map_err(|e| syscall("setsockopt", e))?;
        }
        if let Some(c) = &self.control {
            c(net, &a.to_string(), socket2::SockRef::from(&s))?;
        }
        s.bind(&a.into()).map_err(|e| syscall("bind", e))?;
        Ok(s)
    }

    /// Binds the first address that works; `dual` for a wildcard on `tcp`.
    pub(crate) fn listen_tcp_addrs(
        &self,
        net: &'static str,
        addrs: &[SocketAddr],
    ) -> io::Result<TcpListener> {
        first_ok(net, addrs, Addr::Tcp, |a| {
            let dual = net == "tcp" && a.ip().is_unspecified();
            let s = self.ip_socket(net, a, Type::STREAM, dual)?;
            s.listen(self.backlog).map_err(|e| syscall("listen", e))?;
            TcpListener::from_sock(Sock::new(s)?)
        })
    }

    pub(crate) fn listen_udp_addrs(
        &self,
        net: &'static str,
        addrs: &[SocketAddr],
    ) -> io::Result<UdpSocket> {
        first_ok(net, addrs, Addr::Udp, |a| {
            let dual = net == "udp" && a.ip().is_unspecified();
            let s = self.ip_socket(net, a, Type::DGRAM, dual)?;
            UdpSocket::from_sock(Sock::new(s)?, None)
        })
    }

    /// Go's `ListenConfig.Listen` for `tcp*` and `unix`.
    pub fn listen(&self, network: &str, address: &str) -> io::Result<Box<dyn Listener>> {
        let (proto, fam, net) = parse_network("listen", network)?;
        match proto {
            Proto::Tcp => {
                let addrs = resolve(address, "tcp", fam, true, None)
                    .map_err(|e| op_error("listen", net, None, None, e))?;
                Ok(Box::new(self.listen_tcp_addrs(net, &addrs)?))
            }
            Proto::Unix => Ok(Box::new(UnixListener::bind_with(address, self)?)),
            _ => Err(op_error(
                "listen",
                net,
                None,
                None,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unexpected network {network}: use listen_packet"),
                ),
            )),
        }
    }

    /// Go's `ListenConfig.ListenPacket` for `udp*` and `unixgram`.
    pub fn listen_packet(&self, network: &str, address: &str) -> io::Result<PacketSocket> {
        let (proto, fam, net) = parse_network("listen", network)?;
        match proto {
            Proto::Udp => {
                let addrs = resolve(address, "udp", fam, true, None)
                    .map_err(|e| op_error("listen", net, None, None, e))?;
                Ok(PacketSocket::Udp(self.listen_udp_addrs(net, &addrs)?))
            }
            Proto::Unixgram => Ok(PacketSocket::Unix(UnixDatagram::bind(address)?)),
            _ => Err(op_error(
                "listen",
                net,
                None,
                None,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unexpected network {network}: use listen"),
                ),
            )),
        }
    }
}

/// Go's `net.Listen(network, address)`: `tcp`, `tcp4`, `tcp6`, `unix`.
pub fn listen(network: &str, address: &str) -> io::Result<Box<dyn Listener>> {
    ListenConfig::new().listen(network, address)
}

/// Go's `net.ListenPacket(network, address)`: `udp*`, `unixgram`.
pub fn listen_packet(network: &str, address: &str) -> io::Result<PacketSocket> {
    ListenConfig::new().listen_packet(network, address)
}

/// Tries `f` on each address in order and returns the first success, or the first failure as
/// Go's `listen <net> <addr>: ...` error (Go's listeners also take the first address that works).
fn first_ok<T>(
    net: &'static str,
    addrs: &[SocketAddr],
    addr: fn(SocketAddr) -> Addr,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut first = None;
    for &a in addrs {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => {
                first.get_or_insert(op_error("listen", net, None, Some(addr(a)), e));
            }
        }
    }
    Err(first.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses")))
}
