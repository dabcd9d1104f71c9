//! Raw epoll echo server: the "ceiling" peer, no coroutines, no runtime.
//!
//! Design (the fastest honest design we know for this workload): one thread per
//! CPU (override with EPOLL_ECHO_THREADS), each with its own SO_REUSEPORT
//! listener (backlog 1024) and its own edge-triggered epoll instance, so there
//! is no cross-thread handoff at all. Each connection is registered once with
//! EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET. On readiness we read up to 4 KiB into a
//! per-thread buffer and write it all back; if the socket buffer is full
//! (partial write) the rest is kept in a per-connection pending buffer, reading
//! stops, and the next EPOLLOUT edge flushes it before reading resumes.
//! Per-connection state is therefore zero bytes of user memory unless a write
//! was partial (the kernel socket is all that is held).

use std::io;
use std::os::fd::RawFd;

const LISTENER: u64 = u64::MAX;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn listener(port: u16) -> io::Result<RawFd> {
    // SAFETY: plain socket syscalls on fds we own; pointers refer to live locals.
    unsafe {
        let fd = cvt(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))?;
        let one: libc::c_int = 1;
        let p = &one as *const _ as *const libc::c_void;
        let l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        cvt(libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, p, l))?;
        cvt(libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, p, l))?;
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        cvt(libc::bind(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t))?;
        cvt(libc::listen(fd, 1024))?;
        Ok(fd)
    }
}

fn epoll_add(ep: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: ev is a valid epoll_event for the duration of the call.
    cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
}

fn close(fd: RawFd) {
    // SAFETY: fd is a connection fd owned by this thread, closed exactly once.
    unsafe { libc::close(fd) };
}

/// Writes as much of `data` as possible; returns bytes written or Err on a hard error.
fn write_some(fd: RawFd, data: &[u8]) -> Result<usize, ()> {
    let mut off = 0;
    while off < data.len() {
        // SAFETY: the pointer/length pair is a valid subslice of `data`.
        let n = unsafe { libc::send(fd, data[off..].as_ptr() as *const libc::c_void, data.len() - off, libc::MSG_NOSIGNAL) };
        if n > 0 {
            off += n as usize;
        } else {
            let e = io::Error::last_os_error().raw_os_error();
            if e == Some(libc::EAGAIN) {
                break;
            }
            if e == Some(libc::EINTR) {
                continue;
            }
            return Err(());
        }
    }
    Ok(off)
}

struct Worker {
    ep: RawFd,
    lfd: RawFd,
    /// pending[fd]: bytes still to write after a partial write.
    pending: Vec<Vec<u8>>,
    buf: Box<[u8; 4096]>,
}

impl Worker {
    fn accept_all(&mut self) {
        loop {
            // SAFETY: accept4 with null address pointers is allowed.
            let fd = unsafe { libc::accept4(self.lfd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                    _ => {
                        eprintln!("accept: {e}");
                        return;
                    }
                }
            }
            let one: libc::c_int = 1;
            // SAFETY: valid fd and option pointer.
            unsafe {
                libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as libc::socklen_t)
            };
            if self.pending.len() <= fd as usize {
                self.pending.resize_with(fd as usize + 1, Vec::new);
            }
            let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            if epoll_add(self.ep, fd, ev, fd as u64).is_err() {
                close(fd);
            }
        }
    }

    fn drop_conn(&mut self, fd: RawFd) {
        self.pending[fd as usize] = Vec::new();
        close(fd); // closing removes it from the epoll set
    }

    /// Handles readiness on a connection. Edge-triggered: we must drain until
    /// EAGAIN (or stop because output is blocked, then EPOLLOUT resumes us).
    fn conn_ready(&mut self, fd: RawFd, events: u32) {
        let i = fd as usize;
        if !self.pending[i].is_empty() {
            let p = std::mem::take(&mut self.pending[i]);
            match write_some(fd, &p) {
                Err(()) => return self.drop_conn(fd),
                Ok(n) if n < p.len() => {
                    self.pending[i] = p[n..].to_vec();
                    return; // still blocked on output
                }
                Ok(_) => {}
            }
        }
        loop {
            // SAFETY: buf is a valid 4096-byte buffer.
            let n = unsafe { libc::recv(fd, self.buf.as_mut_ptr() as *mut libc::c_void, 4096, 0) };
            if n == 0 {
                return self.drop_conn(fd);
            }
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => {
                        if events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                            self.drop_conn(fd);
                        }
                        return;
                    }
                    Some(libc::EINTR) => continue,
                    _ => return self.drop_conn(fd),
                }
            }
            let n = n as usize;
            match write_some(fd, &self.buf[..n]) {
                Err(()) => return self.drop_conn(fd),
                Ok(w) if w < n => {
                    self.pending[i] = self.buf[w..n].to_vec();
                    return; // wait for EPOLLOUT before reading more
                }
                Ok(_) => {}
            }
        }
    }

    fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        loop {
            // SAFETY: events has room for 1024 entries.
            let n = unsafe { libc::epoll_wait(self.ep, events.as_mut_ptr(), events.len() as libc::c_int, -1) };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                panic!("epoll_wait: {}", io::Error::last_os_error());
            }
            for ev in &events[..n as usize] {
                let (data, evs) = (ev.u64, ev.events);
                if data == LISTENER {
                    self.accept_all();
                } else {
                    self.conn_ready(data as RawFd, evs);
                }
            }
        }
    }
}

fn main() {
    let port = gort_bench_peers::port_arg("epoll_echo");
    let threads = std::env::var("EPOLL_ECHO_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or_else(gort_bench_peers::ncpus);
    let mut handles = Vec::new();
    for _ in 0..threads {
        let lfd = listener(port).expect("listen");
        // SAFETY: plain syscall.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).expect("epoll_create1");
        epoll_add(ep, lfd, (libc::EPOLLIN | libc::EPOLLET) as u32, LISTENER).expect("epoll_ctl");
        let w = Worker { ep, lfd, pending: Vec::new(), buf: Box::new([0u8; 4096]) };
        handles.push(std::thread::spawn(move || w.run()));
    }
    for h in handles {
        let _ = h.join();
    }
}
