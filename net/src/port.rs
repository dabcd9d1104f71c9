//! Service names for ports (Go's `net.LookupPort`): `"http"` in `dial("tcp", "host:http")`.
//!
//! What: a port is a decimal number, or a service name looked up in a table built once per
//! process from a few well-known entries plus `/etc/services` (a missing or unreadable file
//! leaves the built-in entries). Names match without regard to ASCII case.
//!
//! Invariants: the table is read once (`OnceLock`), so a lookup after the first is a hash
//! lookup and never touches the file system; reading a local file from a worker is what Go
//! does too (`readServices`), and it happens at most once.
//!
//! Go counterpart: `lookupPortMap`/`readServices` (`lookup.go`, `port_unix.go`). Differences:
//! the error is always `lookup tcp/NAME: unknown port` (`io::ErrorKind::NotFound`), the
//! message Go gives on Linux; there is no per-context cancellation (nothing here can block
//! for long).
use std::collections::HashMap;
use std::io;
use std::sync::OnceLock;

/// Entries present even without `/etc/services` (a container image may lack it).
const BUILTIN: &[(&str, &str, u16)] = &[
    ("tcp", "ftp", 21),
    ("tcp", "ssh", 22),
    ("tcp", "telnet", 23),
    ("tcp", "smtp", 25),
    ("tcp", "domain", 53),
    ("udp", "domain", 53),
    ("tcp", "http", 80),
    ("tcp", "www", 80),
    ("tcp", "pop3", 110),
    ("udp", "ntp", 123),
    ("tcp", "imap", 143),
    ("tcp", "imap2", 143),
    ("tcp", "https", 443),
    ("tcp", "submissions", 465),
    ("udp", "syslog", 514),
    ("tcp", "imaps", 993),
    ("tcp", "pop3s", 995),
];

type Table = HashMap<(&'static str, String), u16>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Table = BUILTIN
            .iter()
            .map(|&(p, n, port)| ((p, n.to_string()), port))
            .collect();
        if let Ok(text) = std::fs::read_to_string("/etc/services") {
            parse_services(&text, &mut t);
        }
        t
    })
}

/// Adds the `tcp` and `udp` entries of an `/etc/services` text: `name port/proto aliases...`,
/// `#` to the end of a line is a comment.
fn parse_services(text: &str, t: &mut Table) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut f = line.split_whitespace();
        let (Some(name), Some(pp)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let proto = match proto {
            "tcp" => "tcp",
            "udp" => "udp",
            _ => continue,
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        for n in std::iter::once(name).chain(f) {
            t.entry((proto, n.to_ascii_lowercase())).or_insert(port);
        }
    }
}

/// The port of `service` for protocol `proto` ("tcp", "udp", or "" for TCP then UDP). A
/// decimal `service` is parsed (empty is port 0); `hostport` names the address in errors.
pub(crate) fn port_of(proto: &str, hostport: &str, service: &str) -> io::Result<u16> {
    if service.is_empty() {
        return Ok(0);
    }
    let digits = service.strip_prefix(['+', '-']).unwrap_or(service);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let invalid = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("address {hostport}: invalid port"),
            )
        };
        if service.starts_with('-') {
            return Err(invalid());
        }
        return digits.parse::<u16>().map_err(|_| invalid());
    }
    let key = service.to_ascii_lowercase();
    let protos: &[&'static str] = match proto {
        "tcp" => &["tcp"],
        "udp" => &["udp"],
        _ => &["tcp", "udp"],
    };
    for &p in protos {
        if let Some(&port) = table().get(&(p, key.clone())) {
            return Ok(port);
        }
    }
    let shown = if proto.is_empty() { "tcp" } else { proto };
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("lookup {shown}/{service}: unknown port"),
    ))
}

/// Go's `net.LookupPort`: the port number of `service` for `network` (`tcp`, `tcp4`,
/// `tcp6`, `udp`, `udp4`, `udp6`, or `""`/`ip` for either). Decimal strings are parsed;
/// names come from `/etc/services` and a few built-in entries (`http`, `https`, `ssh`, ...).
///
/// ```
/// assert_eq!(gort_net::lookup_port("tcp", "https").unwrap(), 443);
/// assert_eq!(gort_net::lookup_port("udp", "53").unwrap(), 53);
/// let e = gort_net::lookup_port("tcp", "no-such-service").unwrap_err();
/// assert_eq!(e.to_string(), "lookup tcp/no-such-service: unknown port");
/// ```
pub fn lookup_port(network: &str, service: &str) -> io::Result<u16> {
    let proto = match network {
        "tcp" | "tcp4" | "tcp6" => "tcp",
        "udp" | "udp4" | "udp6" => "udp",
        "" | "ip" => "",
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown network {network}"),
            ))
        }
    };
    port_of(proto, service, service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_services_lines_with_aliases_and_comments() {
        let mut t = Table::new();
        parse_services(
            "# comment\nfoo 1234/tcp Bar baz # trailing\nfoo 1235/udp\nbad x/tcp\nddp 2/ddp\n\n",
            &mut t,
        );
        assert_eq!(t.get(&("tcp", "foo".into())), Some(&1234));
        assert_eq!(t.get(&("tcp", "bar".into())), Some(&1234));
        assert_eq!(t.get(&("tcp", "baz".into())), Some(&1234));
        assert_eq!(t.get(&("udp", "foo".into())), Some(&1235));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn numbers_names_and_errors() {
        assert_eq!(port_of("tcp", "h:80", "80").unwrap(), 80);
        assert_eq!(port_of("tcp", "h:+80", "+80").unwrap(), 80);
        assert_eq!(port_of("tcp", "h:", "").unwrap(), 0);
        assert_eq!(port_of("tcp", "h:HTTP", "HTTP").unwrap(), 80);
        assert_eq!(port_of("", "h:domain", "domain").unwrap(), 53);
        assert_eq!(port_of("udp", "h:ntp", "ntp").unwrap(), 123);
        let e = port_of("tcp", "h:70000", "70000").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "address h:70000: invalid port");
        let e = port_of("tcp", "h:-1", "-1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = port_of("udp", "h:nope", "nope").unwrap_err();
        assert_eq!(e.to_string(), "lookup udp/nope: unknown port");
        let e = lookup_port("sctp", "http").unwrap_err();
        assert_eq!(e.to_string(), "unknown network sctp");
    }
}
