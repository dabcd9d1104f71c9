//! Addresses whose TCP connects hang, for the Happy Eyeballs tests: a listener whose accept
//! queue is full (nobody accepts) makes the kernel drop further SYNs, so a connect to it waits
//! until its deadline. Blocking std calls: set these up outside coroutines.
#![allow(dead_code)] // each test file uses some of these
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

pub const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A listener with a full accept queue; keep it alive while its address is used.
pub struct Hanging {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fill: Vec<TcpStream>,
}

/// A hanging address on `ip:port` (`port` 0: any). Checks that a further connect really
/// hangs; an error if the port cannot be bound.
pub fn hanging(ip: IpAddr, port: u16) -> io::Result<Hanging> {
    let addr = SocketAddr::new(ip, port);
    let l = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    l.bind(&addr.into())?;
    l.listen(0)?;
    let addr = l.local_addr()?.as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(c) => fill.push(c),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Ok(Hanging {
                    addr,
                    _listener: l,
                    _fill: fill,
                })
            }
            Err(e) => panic!("filling the backlog of {addr}: {e}"),
        }
    }
    panic!("connects to {addr} never hang: the full-backlog trick does not work here");
}

/// For dials to `localhost:PORT` (127.0.0.1 first, then ::1): `first()` on 127.0.0.1 (any
/// port, returned with it) and `second(port)` on [::1] at the same port, retried with fresh
/// ports while the second cannot bind.
pub fn localhost_pair<A, B>(
    first: impl Fn() -> io::Result<(A, u16)>,
    second: impl Fn(u16) -> io::Result<B>,
) -> (A, B, u16) {
    for _ in 0..20 {
        let (a, port) = first().unwrap();
        if let Ok(b) = second(port) {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

/// A std listener on `ip:port` whose connections are accepted and dropped by a thread.
pub fn accepting(ip: IpAddr, port: u16) -> io::Result<SocketAddr> {
    let l = TcpListener::bind(SocketAddr::new(ip, port))?;
    let a = l.local_addr()?;
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    Ok(a)
}

/// A port on `ip` with nothing listening: bound, then released.
pub fn refusing(ip: IpAddr) -> SocketAddr {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}
