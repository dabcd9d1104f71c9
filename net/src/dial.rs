//! Dialing: [`Dialer`], [`dial`], [`dial_timeout`] (Go's `net.Dialer`, `net.Dial`,
//! `net.DialTimeout`).
//!
//! What: parses the network (`tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6`, `unix`,
//! `unixgram`), resolves the address (off the worker, see `addr`), and dials. Within a list
//! of addresses [`Dialer::dial_serial`] tries them in order (Go's `dialSerial`, for TCP and
//! UDP alike); with a timeout each attempt gets a share of the time left, as Go's
//! `partialDeadline` does (at least 2 s or whatever is left), and the first error is
//! returned. A `tcp` list holding both IPv4 and IPv6 addresses is raced as RFC 6555 "Happy
//! Eyeballs" (Go's `dialParallel`, see `dial/parallel.rs`): the family of the first address
//! is tried first, the other one joins after [`Dialer::fallback_delay`] (300 ms).
//!
//! Invariants: the deadline (`timeout`/`deadline`) is computed once, before the lookup, and
//! covers it: a lookup still running then fails the dial with `dial tcp: lookup HOST: i/o
//! timeout`, as Go's DialTimeout does. `now + timeout` is computed with `checked_add`, so a
//! huge timeout means no deadline instead of an overflow panic. The control hook sees the raw
//! socket before bind/connect. Literal IPs and single-family lists take the serial path: no
//! coroutine, no channel.
//!
//! [`Dialer::dial_context`] (Go's `DialContext`, `dial/context.rs`) adds a context's deadline
//! and cancellation.
//!
//! Differences from Go: the Fast Fallback switch is [`Dialer::fast_fallback`] instead of a
//! negative `FallbackDelay`.
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort_runtime::context::Context;

use crate::addr::{resolve, Addr, Family};
use crate::conn::Conn;
use crate::error::{op_error, OpError};
use crate::tcp::TcpStream;
use crate::udp::UdpSocket;
use crate::unix::{UnixDatagram, UnixStream};

mod context;
mod parallel;

pub(crate) use parallel::Cancel;

/// Go's default `FallbackDelay` (`net.Dialer.fallbackDelay`).
const DEFAULT_FALLBACK_DELAY: Duration = Duration::from_millis(300);

/// A hook run on each new socket before bind/connect: `(network, address, socket)`.
pub type Control = Arc<dyn Fn(&str, &str, socket2::SockRef<'_>) -> io::Result<()> + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Proto {
    Tcp,
    Udp,
    Unix,
    Unixgram,
}

/// Parses a Go network name.
pub(crate) fn parse_network(
    op: &'static str,
    network: &str,
) -> io::Result<(Proto, Family, &'static str)> {
    Ok(match network {
        "tcp" => (Proto::Tcp, Family::Any, "tcp"),
        "tcp4" => (Proto::Tcp, Family::V4, "tcp4"),
        "tcp6" => (Proto::Tcp, Family::V6, "tcp6"),
        "udp" => (Proto::Udp, Family::Any, "udp"),
        "udp4" => (Proto::Udp, Family::V4, "udp4"),
        "udp6" => (Proto::Udp, Family::V6, "udp6"),
        "unix" => (Proto::Unix, Family::Any, "unix"),
        "unixgram" => (Proto::Unixgram, Family::Any, "unixgram"),
        _ => {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown network {network}"),
            );
            let op = OpError {
                op,
                net: network.to_string().into(),
                source: None,
                addr: None,
                err: e,
                written: 0,
            };
            return Err(io::Error::new(io::ErrorKind::InvalidInput, op));
        }
    })
}

/// Options for dialing (Go's `net.Dialer`).
#[derive(Clone, Default)]
pub struct Dialer {
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) control: Option<Control>,
    /// Zero: [`DEFAULT_FALLBACK_DELAY`].
    pub(crate) fallback_delay: Duration,
    pub(crate) no_fast_fallback: bool,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("timeout", &self.timeout)
            .field("local_addr", &self.local_addr)
            .field("fallback_delay", &self.fallback())
            .finish()
    }
}

impl Dialer {
    /// No timeout, no local address, no hook.
    pub fn new() -> Dialer {
        Dialer::default()
    }
    /// Total time allowed for the dial (all addresses together).
    pub fn timeout(mut self, t: Duration) -> Dialer {
        self.timeout = Some(t);
        self
    }
    /// Absolute deadline for the dial.
    pub fn deadline(mut self, d: Instant) -> Dialer {
        self.deadline = Some(d);
        self
    }
    /// Local address to bind before connecting.
    pub fn local_addr(mut self, a: SocketAddr) -> Dialer {
        self.local_addr = Some(a);
        self
    }
    /// TCP keep-alive idle period for dialed connections.
    pub fn keep_alive(mut self, t: Duration) -> Dialer {
        self.keep_alive = Some(t);
        self
    }
    /// Hook that sees each raw socket before bind/connect (Go's `Dialer.Control`).
    pub fn control(
        mut self,
        f: impl Fn(&str, &str, socket2::SockRef<'_>) -> io::Result<()> + Send + Sync + 'static,
    ) -> Dialer {
        self.control = Some(Arc::new(f));
        self
    }
    /// How long a dial waits for the first address family before it races the other one
    /// (Go's `Dialer.FallbackDelay`, RFC 6555 "Happy Eyeballs"). Zero means the default,
    /// 300 ms, as in Go. It matters only for `tcp` dials whose address list holds both IPv4
    /// and IPv6 addresses (a name such as `localhost`; a mixed list given to
    /// [`TcpStream::connect`], which uses the defaults): the addresses of the first one's family (the
    /// primaries) are tried in order; if none has connected after this delay, or they all
    /// failed sooner, the other family (the fallbacks) is tried in parallel. The first
    /// connection wins and the other attempt is closed; if both fail, the primaries' first
    /// error is returned. To turn the race off (Go's negative `FallbackDelay`) use
    /// [`Dialer::fast_fallback`]`(false)`.
    pub fn fallback_delay(mut self, d: Duration) -> Dialer {
        self.fallback_delay = d;
        self
    }
    /// Turns RFC 6555 Fast Fallback on (the default) or off. Off is Go's negative
    /// `FallbackDelay`: all addresses are tried one after the other, in resolver order,
    /// whatever their family. [`Dialer::fallback_delay`] does not turn it back on.
    pub fn fast_fallback(mut self, on: bool) -> Dialer {
        self.no_fast_fallback = !on;
        self
    }

    /// The fallback delay, or `None` when Fast Fallback is off.
    pub(crate) fn fallback(&self) -> Option<Duration> {
        match (self.no_fast_fallback, self.fallback_delay.is_zero()) {
            (true, _) => None,
            (false, true) => Some(DEFAULT_FALLBACK_DELAY),
            (false, false) => Some(self.fallback_delay),
        }
    }

    pub(crate) fn overall_deadline(&self) -> Option<Instant> {
        let t = self.timeout.and_then(|t| Instant::now().checked_add(t));
        match (t, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Dials TCP to `addrs`, all by `deadline` (from [`Dialer::overall_deadline`], taken
    /// before the lookup): in order, or, for `tcp` with both families and Fast Fallback on,
    /// as Go's `dialParallel` (`dial/parallel.rs`).
    /// A `cancel` (a `DialContext`'s) stops it, racers included.
    pub(crate) fn dial_tcp_addrs(
        &self,
        net: &'static str,
        addrs: &[SocketAddr],
        deadline: Option<Instant>,
        cancel: Option<&Cancel>,
    ) -> io::Result<TcpStream> {
        if let Some(delay) = self.fallback().filter(|_| net == "tcp") {
            if let Some((primaries, fallbacks)) = parallel::partition(addrs) {
                return parallel::dial_parallel(
                    self, net, primaries, fallbacks, deadline, delay, cancel,
                );
            }
        }
        self.dial_serial(net, addrs, deadline, cancel)
    }

    /// Go's `dialSerial` for TCP: the first address that accepts, or the first error. A
    /// `cancel` (the Happy Eyeballs loser) stops it: the socket being connected is closed
    /// and no further address is tried.
    pub(crate) fn dial_serial(
        &self,
        net: &'static str,
        addrs: &[SocketAddr],
        deadline: Option<Instant>,
        cancel: Option<&Cancel>,
    ) -> io::Result<TcpStream> {
        serial(net, addrs, deadline, Addr::Tcp, |a, partial| {
            if let Some(c) = cancel.filter(|c| c.is_cancelled()) {
                return Err(op_error("dial", net, None, Some(Addr::Tcp(a)), c.error()));
            }
            TcpStream::connect_one(a, partial, self, net, cancel)
        })
    }

    /// Go's `dialSerial` for UDP: the first address whose socket connects (a connect can
    /// fail, e.g. `EACCES` for a broadcast address, `ENETUNREACH` for a family without
    /// routes), or the first error.
    pub(crate) fn dial_udp_addrs(
        &self,
        net: &'static str,
        addrs: &[SocketAddr],
        deadline: Option<Instant>,
    ) -> io::Result<UdpSocket> {
        serial(net, addrs, deadline, Addr::Udp, |a, _| {
            UdpSocket::dial(net, a, self)
        })
    }

    /// Go's `filterAddrList` for a dial with a local address: keeps the remote addresses of
    /// its family (IPv4-mapped IPv6 counts as IPv4; a wildcard on either side matches both).
    /// None left: `address LOCAL: no suitable address found`.
    fn filter_local(&self, addrs: Vec<SocketAddr>) -> io::Result<Vec<SocketAddr>> {
        let Some(local) = self.local_addr.filter(|l| !l.ip().is_unspecified()) else {
            return Ok(addrs);
        };
        let v4 = |a: &SocketAddr| match a.ip() {
            std::net::IpAddr::V4(_) => true,
            std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
        };
        let kept: Vec<_> = addrs
            .into_iter()
            .filter(|a| a.ip().is_unspecified() || v4(a) == v4(&local))
            .collect();
        if kept.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("address {local}: no suitable address found"),
            ));
        }
        Ok(kept)
    }

    /// Go's `Dialer.Dial`: a `Box<dyn Conn>` for any supported network.
    pub fn dial(&self, network: &str, address: &str) -> io::Result<Box<dyn Conn>> {
        // Once, before the lookup: the timeout covers resolving too, as in Go.
        self.dial_with(network, address, self.overall_deadline(), None)
    }

    /// `dial` by `deadline`, and, for `dial_context`, cancelled with `ctx`'s [`Cancel`].
    fn dial_with(
        &self,
        network: &str,
        address: &str,
        deadline: Option<Instant>,
        ctx: Option<(&Context, &Cancel)>,
    ) -> io::Result<Box<dyn Conn>> {
        let (proto, fam, net) = parse_network("dial", network)?;
        let wrap = |e| op_error("dial", net, None, None, e);
        let cancel = ctx.map(|(_, c)| c);
        // Unix and UDP dials do not wait: a context only fails them if it is done already.
        let check = |a: Addr| match cancel.filter(|c| c.is_cancelled()) {
            Some(c) => Err(op_error("dial", net, None, Some(a), c.error())),
            None => Ok(()),
        };
        match proto {
            Proto::Tcp => {
                let addrs = context::lookup(address, "tcp", fam, deadline, ctx)
                    .and_then(|a| self.filter_local(a))
                    .map_err(wrap)?;
                Ok(Box::new(
                    self.dial_tcp_addrs(net, &addrs, deadline, cancel)?,
                ))
            }
            Proto::Udp => {
                let addrs = context::lookup(address, "udp", fam, deadline, ctx)
                    .and_then(|a| self.filter_local(a))
                    .map_err(wrap)?;
                if let Some(a) = addrs.first() {
                    check(Addr::Udp(*a))?;
                }
                Ok(Box::new(self.dial_udp_addrs(net, &addrs, deadline)?))
            }
            Proto::Unix => {
                check(Addr::Unix(Some(address.into()), "unix"))?;
                Ok(Box::new(UnixStream::connect_deadline(address, deadline)?))
            }
            Proto::Unixgram => {
                check(Addr::Unix(Some(address.into()), "unixgram"))?;
                let s = UnixDatagram::unbound()?;
                s.connect(address)?;
                Ok(Box::new(s))
            }
        }
    }

    /// Dials TCP and returns the concrete stream (Go's `DialTCP`).
    pub fn dial_tcp(&self, network: &str, address: &str) -> io::Result<TcpStream> {
        let (proto, fam, net) = parse_network("dial", network)?;
        if proto != Proto::Tcp {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown network {network}"),
            );
            return Err(op_error("dial", net, None, None, e));
        }
        let deadline = self.overall_deadline();
        let addrs = resolve(address, "tcp", fam, false, deadline)
            .and_then(|a| self.filter_local(a))
            .map_err(|e| op_error("dial", net, None, None, e))?;
        self.dial_tcp_addrs(net, &addrs, deadline, None)
    }
}

/// Go's `dialSerial` loop: `one(address, partial deadline)` for each address in order until
/// one succeeds; the first error otherwise. With the deadline passed, the addresses left are
/// not tried (an `i/o timeout` error unless an earlier address failed first).
fn serial<T>(
    net: &'static str,
    addrs: &[SocketAddr],
    deadline: Option<Instant>,
    addr: fn(SocketAddr) -> Addr,
    mut one: impl FnMut(SocketAddr, Option<Instant>) -> io::Result<T>,
) -> io::Result<T> {
    let mut first: Option<io::Error> = None;
    for (i, a) in addrs.iter().enumerate() {
        let partial = deadline.map(|d| partial_deadline(d, addrs.len() - i));
        if let Some(d) = partial {
            if Instant::now() >= d {
                let e = op_error(
                    "dial",
                    net,
                    None,
                    Some(addr(*a)),
                    gort_runtime::netpoll::timeout_error(),
                );
                return Err(first.unwrap_or(e));
            }
        }
        match one(*a, partial) {
            Ok(s) => return Ok(s),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses")))
}

/// Go's `partialDeadline`: split the time left among the addresses left, but give each at
/// least 2 s (or all that is left).
fn partial_deadline(deadline: Instant, left: usize) -> Instant {
    let now = Instant::now();
    let remaining = deadline.saturating_duration_since(now);
    let mut each = remaining / left.max(1) as u32;
    let sane = Duration::from_secs(2);
    if each < sane {
        each = remaining.min(sane);
    }
    now.checked_add(each).map_or(deadline, |d| d.min(deadline))
}

/// Go's `net.Dial(network, address)`.
pub fn dial(network: &str, address: &str) -> io::Result<Box<dyn Conn>> {
    Dialer::new().dial(network, address)
}

/// Go's `net.DialTimeout`. A huge timeout means no deadline.
pub fn dial_timeout(network: &str, address: &str, timeout: Duration) -> io::Result<Box<dyn Conn>> {
    Dialer::new().timeout(timeout).dial(network, address)
}

#[cfg(test)]
mod tests;
