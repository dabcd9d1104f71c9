//! The system resolver: `getaddrinfo(3)` through libc, with Go-style errors (Go's cgo
//! resolver, `cgo_unix.go`).
//!
//! What: [`lookup_ip`] returns the IP addresses of a host name in the order `getaddrinfo`
//! gives them, identical entries removed. It blocks; `addr::resolve` runs it on the blocking
//! pool. This file and `sock.rs` are the only ones in gort-net with `unsafe`.
//!
//! Hints: `ai_family` follows the network (`AF_INET` for tcp4/udp4, `AF_INET6` for
//! tcp6/udp6, else `AF_UNSPEC`), as Go's cgo resolver does; `ai_socktype` is `SOCK_STREAM`
//! so each address comes once instead of once per socket type (Go does the same); no
//! service (the port is set by the caller). No `AI_ADDRCONFIG`: Go leaves it out on Linux
//! (`cgo_linux.go`), and with it glibc ignores loopback addresses when deciding which
//! families are configured, so on a loopback-only machine names of `::1` (or even of
//! 127.0.0.1) in /etc/hosts would not resolve.
//!
//! Errors (the text goes after `lookup HOST: `):
//! * `EAI_NONAME`, `EAI_NODATA`, or a name containing NUL: "no such host", kind `NotFound`
//!   (Go's `errNoSuchHost`);
//! * `EAI_AGAIN`: "temporary failure in name resolution", kind `TimedOut`: glibc reports
//!   it when no name server answered in time, which Go's own resolver reports as a timeout;
//!   Go's cgo resolver marks it temporary. Callers that retry on `TimedOut` do the right
//!   thing;
//! * `EAI_SYSTEM`: the errno's text and kind (as `error::errno_text`);
//! * `EAI_MEMORY`: its text, kind `OutOfMemory`; any other: `gai_strerror`'s text with a
//!   lower-case first letter, kind `Other`.
//!
//! Differences from Go: Go prints `gai_strerror` text as is ("Temporary failure in name
//! resolution"); here it is lower-cased like every other error text of gort-net.
use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr;

use crate::addr::Family;

/// The addresses of `host` (a name, not a literal), in resolver order, without duplicates.
pub(crate) fn lookup_ip(host: &str, fam: Family) -> io::Result<Vec<IpAddr>> {
    let Ok(name) = CString::new(host) else {
        return Err(no_such_host());
    };
    // SAFETY: `addrinfo` is plain old data; all-zero is its documented "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = match fam {
        Family::Any => libc::AF_UNSPEC,
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: `name` is a NUL-terminated string and `hints` a valid addrinfo, both alive for
    // the call; a null service is allowed when a node is given; `res` is a valid out pointer.
    let rc = unsafe { libc::getaddrinfo(name.as_ptr(), ptr::null(), &hints, &mut res) };
    if rc != 0 {
        // Read errno at once, before anything else can change it.
        let os = io::Error::last_os_error();
        return Err(gai_error(rc, os));
    }
    let mut out: Vec<IpAddr> = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: `cur` is `res` or an `ai_next` of the list getaddrinfo returned, not freed
        // until `freeaddrinfo` below.
        let ai = unsafe { &*cur };
        if let Some(ip) = ip_of(ai) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        cur = ai.ai_next;
    }
    // SAFETY: `res` is the list getaddrinfo returned (non-null when it succeeds), freed once;
    // nothing borrowed from it outlives this call.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// The IP of one result, if it is an IPv4 or IPv6 socket address.
fn ip_of(ai: &libc::addrinfo) -> Option<IpAddr> {
    if ai.ai_addr.is_null() {
        return None;
    }
    let len = ai.ai_addrlen as usize;
    match ai.ai_family {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says `ai_addr` points to a `sockaddr_in` of `len` bytes;
            // read_unaligned makes no alignment assumption.
            let sin = unsafe { ptr::read_unaligned(ai.ai_addr as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a `sockaddr_in6`.
            let sin6 = unsafe { ptr::read_unaligned(ai.ai_addr as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

fn no_such_host() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such host")
}

/// The Go-style error for a non-zero getaddrinfo result; `os` is errno right after the call.
fn gai_error(rc: i32, os: io::Error) -> io::Error {
    match rc {
        libc::EAI_NONAME | libc::EAI_NODATA => no_such_host(),
        libc::EAI_AGAIN => io::Error::new(
            io::ErrorKind::TimedOut,
            "temporary failure in name resolution",
        ),
        libc::EAI_SYSTEM => match os.raw_os_error() {
            Some(n) if n != 0 => io::Error::new(os.kind(), crate::error::errno_text(n)),
            _ => io::Error::other("system error in name resolution"),
        },
        libc::EAI_MEMORY => io::Error::new(io::ErrorKind::OutOfMemory, gai_text(rc)),
        _ => io::Error::other(gai_text(rc)),
    }
}

/// `gai_strerror` with a lower-case first letter.
fn gai_text(rc: i32) -> String {
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated string (glibc and
    // musl), for any code; null is checked anyway.
    let p = unsafe { libc::gai_strerror(rc) };
    let s = if p.is_null() {
        format!("name resolution error {rc}")
    } else {
        // SAFETY: non-null, NUL-terminated and static (above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Go: the DNSError texts of the cgo resolver (cgo_unix.go), with gort's lower case.
    #[test]
    fn errors_read_like_go() {
        let e = gai_error(libc::EAI_NONAME, io::Error::from_raw_os_error(0));
        assert_eq!(
            (e.kind(), e.to_string()),
            (io::ErrorKind::NotFound, "no such host".into())
        );
        let e = gai_error(libc::EAI_NODATA, io::Error::from_raw_os_error(0));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = gai_error(libc::EAI_AGAIN, io::Error::from_raw_os_error(0));
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "temporary failure in name resolution");
        let e = gai_error(libc::EAI_SYSTEM, io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(e.to_string(), "too many open files");
        let e = gai_error(libc::EAI_FAIL, io::Error::from_raw_os_error(0));
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert!(e.to_string().starts_with("non-recoverable failure"), "{e}");
    }

    // Go: TestLookupHost-style behaviours on names that resolve without DNS (/etc/hosts)
    // and on .invalid names (RFC 6761: never resolve), and on names that cannot exist.
    #[test]
    fn localhost_from_the_system_resolver() {
        let ips = lookup_ip("localhost", Family::V4).unwrap();
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{ips:?}");
        assert!(ips.iter().all(|ip| ip.is_ipv4()), "{ips:?}");
        let mut dedup = ips.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), ips.len());
    }

    #[test]
    fn invalid_and_nul_names_are_no_such_host() {
        for h in ["nonexistent.invalid", "a\0b", ""] {
            let e = lookup_ip(h, Family::Any).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{h:?}");
            assert_eq!(e.to_string(), "no such host");
        }
    }
}
