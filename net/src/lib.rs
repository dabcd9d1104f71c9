//! gort-net: Go's `net` package on gort's netpoller.
//!
//! What: TCP, UDP and Unix sockets whose blocking calls park the calling coroutine (and block
//! a plain thread outside coroutines), Go's deadlines and close semantics, the Go-style
//! surface ([`listen`], [`dial`], [`dial_timeout`], [`Conn`], [`Listener`], [`serve`]) and
//! std-shaped types ([`TcpListener`], [`TcpStream`], [`UdpSocket`], [`UnixListener`],
//! [`UnixStream`], [`UnixDatagram`]).
//!
//! Invariants: every socket is non-blocking and close-on-exec from birth (socket2
//! `SOCK_NONBLOCK|SOCK_CLOEXEC`, `accept4`), stream writes use `MSG_NOSIGNAL`, and errors are
//! Go-style [`OpError`]s inside `io::Error` with the inner kind.
//!
//! Go counterpart: `net` (`fd_posix.go`, `tcpsock.go`, `dial.go`, ...) over
//! `internal/poll.FD` (here `gort_runtime::io::Fd`). Differences: see each module.
#![warn(missing_docs)]

mod addr;
mod conn;
mod context;
mod dial;
mod error;
mod listen;
mod port;
mod resolve_sys;
mod serve;
mod sock;
mod tcp;
mod udp;
mod unix;

pub use addr::{split_host_port, Addr, ToAddrs};
pub use conn::{Conn, Listener};
pub use context::{bind_context, ContextGuard};
pub use dial::{dial, dial_timeout, Control, Dialer};
pub use error::{
    errno_text, is_closed_error, is_timeout, raw_os_error, written, OpError, SyscallError,
};
pub use listen::{listen, listen_packet, ListenConfig, PacketSocket};
pub use port::lookup_port;
pub use serve::{is_temporary, serve, serve_with_buffer};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
