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
//! Differences from Go: no context (Go's `DialContext`); the Fast Fallback switch is
//! [`Dialer::fast_fallback`] instead of a negative `FallbackDelay`.
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::{resolve, Addr, Family};
use crate::conn::Conn;
use crate::error::{op_error, OpError};
use crate::tcp::TcpStream;
use crate::udp::UdpSocket;
use crate::unix::{UnixDatagram, UnixStream};

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
    pub(crate) fn dial_tcp_addrs(
        &self,
        net: &'static str,
        addrs: &[SocketAddr],
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        if let Some(delay) = self.fallback().filter(|_| net == "tcp") {
            if let Some((primaries, fallbacks)) = parallel::partition(addrs) {
                return parallel::dial_parallel(self, net, primaries, fallbacks, deadline, delay);
            }
        }
        self.dial_serial(net, addrs, deadline, None)
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

    /// Go's `Dialer.Dial`: a `Box<dyn Conn>` for any supported network.
    pub fn dial(&self, network: &str, address: &str) -> io::Result<Box<dyn Conn>> {
        let (proto, fam, net) = parse_network("dial", network)?;
        let wrap = |e| op_error("dial", net, None, None, e);
        // Once, before the lookup: the timeout covers resolving too, as in Go.
        let deadline = self.overall_deadline();
        match proto {
            Proto::Tcp => {
                let addrs = resolve(address, "tcp", fam, false, deadline).map_err(wrap)?;
                Ok(Box::new(self.dial_tcp_addrs(net, &addrs, deadline)?))
            }
            Proto::Udp => {
                let addrs = resolve(address, "udp", fam, false, deadline).map_err(wrap)?;
                Ok(Box::new(self.dial_udp_addrs(net, &addrs, deadline)?))
            }
            Proto::Unix => Ok(Box::new(UnixStream::connect_deadline(address, deadline)?)),
            Proto::Unixgram => {
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
            .map_err(|e| op_error("dial", net, None, None, e))?;
        self.dial_tcp_addrs(net, &addrs, deadline)
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
mod tests {
    use super::*;
    use crate::addr::SLOW_TEST_HOST;
    use crate::tcp::TcpListener;

    /// A loopback port with nothing listening: bound, then released.
    fn refusing_addr() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        a
    }

    // Go: TestDialTimeout behaviours (the timeout covers the lookup): a lookup that takes 2 s
    // fails a 50 ms dial with `lookup HOST: i/o timeout`; `deadline` and UDP alike.
    #[test]
    fn timeout_covers_the_lookup() {
        gort_runtime::run(|| {
            let addr = format!("{SLOW_TEST_HOST}:80");
            let ms50 = Duration::from_millis(50);
            type DialFn<'a> = Box<dyn Fn() -> io::Result<()> + 'a>;
            let dials: [(&str, DialFn<'_>); 4] = [
                (
                    "tcp",
                    Box::new(|| dial_timeout("tcp", &addr, ms50).map(drop)),
                ),
                (
                    "udp",
                    Box::new(|| dial_timeout("udp", &addr, ms50).map(drop)),
                ),
                (
                    "tcp",
                    Box::new(|| {
                        let d = Dialer::new().deadline(Instant::now() + ms50);
                        d.dial_tcp("tcp", &addr).map(drop)
                    }),
                ),
                (
                    "tcp4",
                    Box::new(|| Dialer::new().timeout(ms50).dial("tcp4", &addr).map(drop)),
                ),
            ];
            for (net, f) in dials {
                let t0 = Instant::now();
                let e = f().unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
                assert_eq!(
                    e.to_string(),
                    format!("dial {net}: lookup {SLOW_TEST_HOST}: i/o timeout")
                );
                // A behaviour bound (the lookup takes 2 s), not a benchmark.
                assert!(
                    t0.elapsed() < Duration::from_millis(1500),
                    "waited for the lookup"
                );
            }
        });
    }

    // Go: dialSerial's contract ("the first successful connection, or the first error"), as
    // TestDialParallel checks it for the primaries: addresses are tried in order; the first
    // that accepts wins; if none does, the FIRST error is returned.
    #[test]
    fn tries_addresses_in_order_and_returns_the_first_error() {
        gort_runtime::run(|| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let live = l.local_addr().unwrap();
            let (r1, r2) = (refusing_addr(), "127.0.0.1:1".parse().unwrap());
            for deadline in [None, Instant::now().checked_add(Duration::from_secs(30))] {
                let d = Dialer::new();
                let s = d.dial_tcp_addrs("tcp", &[r1, live], deadline).unwrap();
                assert_eq!(s.peer_addr().unwrap(), live);
                // The public surface: TcpStream::connect with a slice.
                let s = TcpStream::connect(&[r1, live][..]).unwrap();
                assert_eq!(s.peer_addr().unwrap(), live);

                let e = d.dial_tcp_addrs("tcp", &[r1, r2], deadline).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
                assert_eq!(
                    e.to_string(),
                    format!("dial tcp {r1}: connect: connection refused")
                );
                let e = d.dial_tcp_addrs("tcp", &[r2, r1], deadline).unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("dial tcp {r2}: connect: connection refused")
                );
            }
            // Of two live addresses the first wins.
            let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
            let live2 = l2.local_addr().unwrap();
            let s = Dialer::new()
                .dial_tcp_addrs("tcp", &[live2, live], None)
                .unwrap();
            assert_eq!(s.peer_addr().unwrap(), live2);
            // With the deadline already past no address is tried: the error is a timeout.
            let past = Some(Instant::now());
            let e = Dialer::new()
                .dial_tcp_addrs("tcp", &[r1, live], past)
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        });
    }

    // Go: dialSerial applies to UDP too (behaviour): the first address whose socket connects
    // wins, else the first error. A UDP connect to the limited broadcast address without
    // SO_BROADCAST fails at once and sends nothing (EACCES; ENETUNREACH on a host with no
    // route but loopback).
    #[test]
    fn udp_tries_addresses_in_order() {
        gort_runtime::run(|| {
            let l = UdpSocket::bind("127.0.0.1:0").unwrap();
            let live = l.local_addr().unwrap();
            let (b9, b10) = (
                "255.255.255.255:9".parse().unwrap(),
                "255.255.255.255:10".parse().unwrap(),
            );
            let d = Dialer::new();
            let s = d.dial_udp_addrs("udp", &[b9, live], None).unwrap();
            assert_eq!(s.peer_addr().unwrap(), live);
            s.send(b"hi").unwrap();
            let mut buf = [0; 8];
            assert_eq!(l.recv_from(&mut buf).unwrap(), (2, s.local_addr().unwrap()));

            let e = d.dial_udp_addrs("udp", &[b9, b10], None).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with("dial udp 255.255.255.255:9: connect: "),
                "{text}"
            );
            let errno = crate::raw_os_error(&e);
            assert!(
                matches!(errno, Some(libc::EACCES | libc::ENETUNREACH)),
                "{text}"
            );
            // With the deadline passed (the lookup used it up) nothing is tried, as in Go.
            let e = d
                .dial_udp_addrs("udp", &[live], Some(Instant::now()))
                .unwrap_err();
            assert_eq!(e.to_string(), format!("dial udp {live}: i/o timeout"));

            // The public surface: `localhost` gives [127.0.0.1, ::1]; a control hook that
            // rejects the IPv4 socket makes `dial` go on to ::1.
            let l6 = UdpSocket::bind("[::1]:0").unwrap();
            let port = l6.local_addr().unwrap().port();
            let d = Dialer::new().control(|_, addr, _| match addr.starts_with("127.") {
                true => Err(io::Error::new(io::ErrorKind::PermissionDenied, "not v4")),
                false => Ok(()),
            });
            let c = d.dial("udp", &format!("localhost:{port}")).unwrap();
            assert_eq!(c.remote_addr(), Addr::Udp(l6.local_addr().unwrap()));
            let e = d.dial("udp4", &format!("localhost:{port}")).unwrap_err();
            assert_eq!(e.to_string(), format!("dial udp4 127.0.0.1:{port}: not v4"));
        });
    }
}
