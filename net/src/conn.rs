//! The Go-style interfaces [`Conn`] and [`Listener`] (Go's `net.Conn`, `net.Listener`).
//!
//! What: object-safe traits so `Box<dyn Conn>` code ports directly from Go. Methods take
//! `&self` (a Go conn is shared by reference), and `Read`/`Write` are implemented for
//! `dyn Conn` and `&dyn Conn`, so `BufReader::new(&*conn)` reads while `conn.write(..)` writes.
//!
//! Invariants: implemented by every connection type by delegating to its inherent methods, so
//! the errors are the same `OpError`s.
//!
//! Differences from Go: deadlines are `Option<Instant>` (`None` = Go's zero `time.Time`).
use std::io::{self, Read, Write};
use std::time::Instant;

use crate::addr::Addr;
use crate::error::{with_written, written};
use crate::tcp::{TcpListener, TcpStream};
use crate::udp::UdpSocket;
use crate::unix::{UnixDatagram, UnixListener, UnixStream};

/// A generic stream-oriented connection (Go's `net.Conn`).
pub trait Conn: Send + Sync {
    /// Reads into `buf`; `Ok(0)` at EOF.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf` and returns its length, or fails (Go's `Write` contract: a short
    /// count always comes with an error). After a partial write the error carries the count:
    /// [`crate::written`]`(&e)`. So ported `conn.write(b)?` never drops bytes silently. (The
    /// `std::io::Write` impls below keep std's contract instead: a short `Ok` count, with the
    /// error on the next call.)
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Closes; parked operations fail with "use of closed network connection".
    fn close(&self) -> io::Result<()>;
    /// Local address (Go's `LocalAddr`).
    fn local_addr(&self) -> Addr;
    /// Remote address (Go's `RemoteAddr`).
    fn remote_addr(&self) -> Addr;
    /// Both deadlines.
    fn set_deadline(&self, d: Option<Instant>) -> io::Result<()>;
    /// Read deadline.
    fn set_read_deadline(&self, d: Option<Instant>) -> io::Result<()>;
    /// Write deadline.
    fn set_write_deadline(&self, d: Option<Instant>) -> io::Result<()>;
}

/// A generic stream listener (Go's `net.Listener`).
pub trait Listener: Send + Sync {
    /// Waits for and returns the next connection.
    fn accept(&self) -> io::Result<Box<dyn Conn>>;
    /// Closes; parked accepts fail with "use of closed network connection".
    fn close(&self) -> io::Result<()>;
    /// The listening address.
    fn addr(&self) -> Addr;
}

/// `{:?}` of a `Box<dyn Conn>` (so `Result<Box<dyn Conn>, _>` has `unwrap_err`, `dbg!`...):
/// its addresses.
impl std::fmt::Debug for dyn Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("local", &self.local_addr())
            .field("remote", &self.remote_addr())
            .finish()
    }
}

/// `{:?}` of a `Box<dyn Listener>`: its address.
impl std::fmt::Debug for dyn Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr())
            .finish()
    }
}

impl Read for dyn Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Conn::read(self, buf)
    }
}
/// std's `Write::write` on a `Conn`: an error after some bytes went out becomes their count
/// (std's contract: an `Err` means nothing was written; the error recurs on the next call).
fn std_write(c: &dyn Conn, buf: &[u8]) -> io::Result<usize> {
    match c.write(buf) {
        Err(e) if written(&e) > 0 => Ok(written(&e)),
        r => r,
    }
}

/// `Conn::write` for stream types: std-style writes (each all-or-partial) until `buf` is all
/// written or one fails; a failure after some bytes carries their count.
fn write_all_counted(mut w: impl Write, buf: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    loop {
        match w.write(&buf[done..]) {
            Ok(n) if done + n == buf.len() => return Ok(buf.len()),
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::WriteZero, "write returned 0");
                return Err(with_written(e, done));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(with_written(e, done)),
        }
    }
}

impl Write for dyn Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std_write(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Read for &dyn Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Conn::read(*self, buf)
    }
}
impl Write for &dyn Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std_write(*self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! stream_conn {
    ($t:ty, $l:expr, $r:expr) => {
        impl Conn for $t {
            fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                Read::read(&mut &*self, buf)
            }
            fn write(&self, buf: &[u8]) -> io::Result<usize> {
                write_all_counted(&*self, buf)
            }
            fn close(&self) -> io::Result<()> {
                <$t>::close(self)
            }
            fn local_addr(&self) -> Addr {
                #[allow(clippy::redundant_closure_call)]
                ($l)(self)
            }
            fn remote_addr(&self) -> Addr {
                #[allow(clippy::redundant_closure_call)]
                ($r)(self)
            }
            fn set_deadline(&self, d: Option<Instant>) -> io::Result<()> {
                <$t>::set_deadline(self, d)
            }
            fn set_read_deadline(&self, d: Option<Instant>) -> io::Result<()> {
                <$t>::set_read_deadline(self, d)
            }
            fn set_write_deadline(&self, d: Option<Instant>) -> io::Result<()> {
                <$t>::set_write_deadline(self, d)
            }
        }
    };
}

fn unspec_tcp() -> Addr {
    Addr::Tcp(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}
fn unspec_udp() -> Addr {
    Addr::Udp(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}

stream_conn!(
    TcpStream,
    |s: &TcpStream| s.laddr.map_or_else(unspec_tcp, Addr::Tcp),
    |s: &TcpStream| s.raddr.map_or_else(unspec_tcp, Addr::Tcp)
);
stream_conn!(
    UnixStream,
    |s: &UnixStream| s.local_addr(),
    |s: &UnixStream| s.peer_addr()
);

impl Conn for UdpSocket {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }
    fn close(&self) -> io::Result<()> {
        UdpSocket::close(self)
    }
    fn local_addr(&self) -> Addr {
        self.laddr.map_or_else(unspec_udp, Addr::Udp)
    }
    fn remote_addr(&self) -> Addr {
        self.peer().map_or_else(unspec_udp, Addr::Udp)
    }
    fn set_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        UdpSocket::set_deadline(self, d)
    }
    fn set_read_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        UdpSocket::set_read_deadline(self, d)
    }
    fn set_write_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        UdpSocket::set_write_deadline(self, d)
    }
}

impl Conn for UnixDatagram {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }
    fn close(&self) -> io::Result<()> {
        UnixDatagram::close(self)
    }
    fn local_addr(&self) -> Addr {
        UnixDatagram::local_addr(self)
    }
    fn remote_addr(&self) -> Addr {
        self.peer_addr_opt()
    }
    fn set_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        UnixDatagram::set_deadline(self, d)
    }
    fn set_read_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        UnixDatagram::set_read_deadline(self, d)
    }
    fn set_write_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        UnixDatagram::set_write_deadline(self, d)
    }
}

impl Listener for TcpListener {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(TcpListener::accept(self)?.0))
    }
    fn close(&self) -> io::Result<()> {
        TcpListener::close(self)
    }
    fn addr(&self) -> Addr {
        Addr::Tcp(self.laddr)
    }
}

impl Listener for UnixListener {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(UnixListener::accept(self)?.0))
    }
    fn close(&self) -> io::Result<()> {
        UnixListener::close(self)
    }
    fn addr(&self) -> Addr {
        self.local_addr()
    }
}
