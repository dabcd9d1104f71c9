//! Addresses and name resolution (Go's `net.Addr`, `SplitHostPort`, and the resolver).
//!
//! What: [`Addr`] is what `local_addr`/`remote_addr` of the Go-style traits return; it
//! prints like Go's (`127.0.0.1:80`, `[::1]:80`, `/tmp/sock`). [`resolve`] turns
//! `"host:port"` into socket addresses: literal IPs and `localhost` never reach
//! `getaddrinfo`; other names are resolved with `getaddrinfo` (resolve_sys.rs, Go-style
//! errors such as `lookup HOST: no such host`) on the blocking pool via `spawn_blocking`, so
//! a worker is never blocked by DNS; with a deadline (a dial's) the caller waits for the
//! lookup only until then (`spawn_blocking_deadline`).
//!
//! Invariants: results are filtered by the network's family (`tcp4` keeps IPv4 only, `tcp6`
//! IPv6 only) and keep resolver order, duplicates removed; `localhost` gives 127.0.0.1 before
//! ::1.
//!
//! Differences from Go: no pure-Go resolver. Ports may be service names (port.rs).
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

/// A network endpoint address (Go's `net.Addr`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A TCP address (Go's `*net.TCPAddr`).
    Tcp(SocketAddr),
    /// A UDP address (Go's `*net.UDPAddr`).
    Udp(SocketAddr),
    /// A Unix socket path (`None` for an unnamed socket); `net` is "unix" or "unixgram".
    Unix(Option<PathBuf>, &'static str),
}

impl Addr {
    /// The network name, as Go's `Addr.Network()`.
    pub fn network(&self) -> &'static str {
        match self {
            Addr::Tcp(_) => "tcp",
            Addr::Udp(_) => "udp",
            Addr::Unix(_, n) => n,
        }
    }

    /// The IP socket address, if this is a TCP or UDP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Addr::Tcp(a) | Addr::Udp(a) => Some(*a),
            Addr::Unix(..) => None,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) | Addr::Udp(a) => write!(f, "{a}"),
            Addr::Unix(Some(p), _) => write!(f, "{}", p.display()),
            Addr::Unix(None, _) => Ok(()),
        }
    }
}

/// Address family restriction of a network name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Family {
    Any,
    V4,
    V6,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Go's `net.SplitHostPort`: `"host:port"`, `"[v6]:port"`, `":port"`.
pub fn split_host_port(hostport: &str) -> io::Result<(&str, &str)> {
    let missing = || bad(format!("address {hostport}: missing port in address"));
    if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| bad(format!("address {hostport}: missing ']' in address")))?;
        let host = &rest[..end];
        let port = rest[end + 1..].strip_prefix(':').ok_or_else(missing)?;
        return Ok((host, port));
    }
    let i = hostport.rfind(':').ok_or_else(missing)?;
    let (host, port) = (&hostport[..i], &hostport[i + 1..]);
    if host.contains(':') {
        return Err(bad(format!(
            "address {hostport}: too many colons in address"
        )));
    }
    Ok((host, port))
}

/// Unit tests only: a name whose lookup takes 2 s (then fails: it is `.invalid`).
#[cfg(test)]
pub(crate) const SLOW_TEST_HOST: &str = "slow.gort-test.invalid";

fn keep(fam: Family, a: &SocketAddr) -> bool {
    match fam {
        Family::Any => true,
        Family::V4 => a.is_ipv4(),
        Family::V6 => a.is_ipv6(),
    }
}

/// Resolves `hostport` for `fam`, its port a number or a service name of protocol `proto`
/// ("tcp", "udp", or "" for either; see port.rs). An empty host gives `wildcard` addresses
/// when `listen` (IPv6 first for `Any`, the dual-stack choice), or loopback when dialing,
/// as Go does. A lookup still running at `deadline` fails with `lookup HOST: i/o timeout`
/// (kind `TimedOut`) and is left to finish on the blocking pool (Go's DialTimeout covers
/// the lookup too).
pub(crate) fn resolve(
    hostport: &str,
    proto: &str,
    fam: Family,
    listen: bool,
    deadline: Option<Instant>,
) -> io::Result<Vec<SocketAddr>> {
    let (host, port) = split_host_port(hostport)?;
    let port = crate::port::port_of(proto, hostport, port)?;
    let mut out: Vec<SocketAddr> = if host.is_empty() {
        if listen {
            vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            ]
        } else {
            vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
            ]
        }
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else if host.eq_ignore_ascii_case("localhost") {
        vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]
    } else {
        let h = host.to_string();
        let job = move || {
            #[cfg(test)]
            if h == SLOW_TEST_HOST {
                // Unit tests only: a lookup that takes 2 s, to test dial deadlines.
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            crate::resolve_sys::lookup_ip(&h, fam)
        };
        let r = match deadline {
            Some(d) => gort_runtime::spawn_blocking_deadline(d, job).and_then(|r| r),
            None => gort_runtime::spawn_blocking(job),
        };
        let ips = r.map_err(|e| io::Error::new(e.kind(), format!("lookup {host}: {e}")))?;
        ips.into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()
    };
    if host.is_empty() && fam == Family::V4 && listen {
        out.retain(|a| a.is_ipv4());
    }
    out.retain(|a| keep(fam, a));
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("address {hostport}: no suitable address found"),
        ));
    }
    Ok(out)
}

/// Things that name IP socket addresses (the gort analogue of std's `ToSocketAddrs`, whose
/// `&str` impl would run `getaddrinfo` on a worker thread; this one uses [`resolve`]).
pub trait ToAddrs {
    /// The addresses, in the order to try them.
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>>;
}

impl ToAddrs for SocketAddr {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![*self])
    }
}
impl ToAddrs for str {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        resolve(self, "", Family::Any, false, None)
    }
}
impl ToAddrs for String {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().to_addrs()
    }
}
impl ToAddrs for (IpAddr, u16) {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(self.0, self.1)])
    }
}
impl ToAddrs for (&str, u16) {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => resolve(
                &format!("{}:{}", self.0, self.1),
                "",
                Family::Any,
                false,
                None,
            ),
        }
    }
}
impl ToAddrs for [SocketAddr] {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.to_vec())
    }
}
impl<T: ToAddrs + ?Sized> ToAddrs for &T {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).to_addrs()
    }
}
