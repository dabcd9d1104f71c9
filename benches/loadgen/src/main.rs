//! Closed-loop TCP echo load generator (raw epoll via libc).
//!
//! loadgen --addr 127.0.0.1:PORT --conns C --size M --duration SECS
//!         [--warmup SECS] [--threads T] [--seed S]
//! loadgen --addr 127.0.0.1:PORT --conns C --size M --idle SECS
//!
//! Load mode: C connections, each sends an M-byte pseudo-random message
//! (xorshift, seeded per connection, new bytes every round trip), waits for the
//! full echo, verifies every byte, repeats. Prints `MEASURE_START` when the
//! warm-up ends and `MEASURE_END` when the measured window ends (so a caller can
//! sample the server's CPU time over exactly that window), then one line:
//!   RESULT rtt_per_sec=.. round_trips=.. p50_us=.. p99_us=.. max_us=.. errors=.. conns=.. size=.. duration_s=..
//! errors = mismatched round trips + connections lost + connections that could
//! not be opened.
//!
//! Idle mode: opens C connections, does one verified round trip on each (so
//! the server allocates per-connection state), prints `READY`, holds them for
//! SECS seconds, prints a RESULT line and exits.

mod hist;

use hist::Hist;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{IntoRawFd, RawFd};
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    idle: Option<f64>,
    seed: u64,
}

fn usage() -> ! {
    eprintln!("usage: loadgen --addr 127.0.0.1:PORT --conns C --size M (--duration SECS [--warmup SECS] [--threads T] | --idle SECS) [--seed S]");
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(v: &str) -> T {
    v.parse().unwrap_or_else(|_| usage())
}

fn parse_args() -> Args {
    let mut a = Args { addr: "127.0.0.1:0".parse().unwrap(), conns: 50, size: 64, duration: 5.0, warmup: 1.0, threads: 1, idle: None, seed: 1 };
    let mut it = std::env::args().skip(1);
    let mut have_addr = false;
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--addr" => {
                a.addr = num(&v);
                have_addr = true;
            }
            "--conns" => a.conns = num(&v),
            "--size" => a.size = num(&v),
            "--duration" => a.duration = num(&v),
            "--warmup" => a.warmup = num(&v),
            "--threads" => a.threads = num(&v),
            "--idle" => a.idle = Some(num(&v)),
            "--seed" => a.seed = num(&v),
            _ => usage(),
        }
    }
    if !have_addr || a.conns == 0 || a.size == 0 || a.threads == 0 {
        usage();
    }
    if !a.addr.ip().is_loopback() {
        eprintln!("loadgen: refusing non-loopback address {}", a.addr);
        std::process::exit(2);
    }
    a
}

fn raise_nofile() {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: rl is a valid rlimit out-parameter.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// Connects with bounded retries (the server's backlog may refuse or drop SYNs).
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut last = None;
    for attempt in 0..30u64 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(10 * (attempt + 1).min(20)));
            }
        }
    }
    Err(last.unwrap())
}

fn open_all(a: &Args) -> (Vec<TcpStream>, u64) {
    let mut v = Vec::with_capacity(a.conns);
    let mut failed = 0;
    for i in 0..a.conns {
        match connect(a.addr) {
            Ok(s) => v.push(s),
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("loadgen: connection {i} failed: {e}");
                }
            }
        }
    }
    (v, failed)
}

struct Rng(u64);
impl Rng {
    fn new(seed: u64, conn: u64) -> Self {
        Rng((seed ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0xD1B5_4A32_D192_ED03) | 1)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let b = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

struct Conn {
    fd: RawFd,
    rng: Rng,
    msg: Vec<u8>,
    sent: usize,
    recvd: usize,
    bad: bool,
    start: Instant,
    alive: bool,
}

#[derive(Default)]
struct Stats {
    hist: Hist,
    round_trips: u64,
    errors: u64,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn close_fd(fd: RawFd) {
    // SAFETY: fd is owned by the caller and closed once.
    unsafe { libc::close(fd) };
}

impl Conn {
    fn new_message(&mut self) {
        self.rng.fill(&mut self.msg);
        self.sent = 0;
        self.recvd = 0;
        self.bad = false;
        self.start = Instant::now();
    }

    /// Sends what it can; false if the connection failed.
    fn pump_send(&mut self) -> bool {
        while self.sent < self.msg.len() {
            let rest = &self.msg[self.sent..];
            // SAFETY: valid buffer.
            let n = unsafe { libc::send(self.fd, rest.as_ptr() as *const libc::c_void, rest.len(), libc::MSG_NOSIGNAL) };
            if n > 0 {
                self.sent += n as usize;
            } else {
                match errno() {
                    libc::EAGAIN => return true,
                    libc::EINTR => continue,
                    _ => return false,
                }
            }
        }
        true
    }

    /// Reads and verifies; completes round trips. false if the connection failed.
    fn pump_recv(&mut self, buf: &mut [u8], st: &mut Stats, window: (Instant, Instant)) -> bool {
        loop {
            let want = (self.msg.len() - self.recvd).min(buf.len());
            // SAFETY: buf has at least `want` bytes.
            let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr() as *mut libc::c_void, want, 0) };
            if n == 0 {
                return false;
            }
            if n < 0 {
                match errno() {
                    libc::EAGAIN => return true,
                    libc::EINTR => continue,
                    _ => return false,
                }
            }
            let n = n as usize;
            if buf[..n] != self.msg[self.recvd..self.recvd + n] {
                self.bad = true;
            }
            self.recvd += n;
            if self.recvd == self.msg.len() {
                let now = Instant::now();
                if now >= window.0 && now < window.1 {
                    st.round_trips += 1;
                    st.hist.record(now.duration_since(self.start).as_nanos() as u64);
                    if self.bad {
                        st.errors += 1;
                    }
                } else if self.bad {
                    st.errors += 1;
                }
                if now >= window.1 {
                    return true; // stop issuing new work
                }
                self.new_message();
                if !self.pump_send() {
                    return false;
                }
            }
        }
    }
}

fn worker(streams: Vec<(usize, TcpStream)>, size: usize, seed: u64, window: (Instant, Instant)) -> Stats {
    let mut st = Stats::default();
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1: {}", io::Error::last_os_error());
    let mut conns: Vec<Conn> = Vec::with_capacity(streams.len());
    for (i, s) in streams {
        s.set_nonblocking(true).expect("nonblocking");
        let fd = s.into_raw_fd();
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32, u64: conns.len() as u64 };
        // SAFETY: valid fd and event.
        let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        assert!(r == 0, "epoll_ctl: {}", io::Error::last_os_error());
        conns.push(Conn { fd, rng: Rng::new(seed, i as u64), msg: vec![0; size], sent: 0, recvd: 0, bad: false, start: Instant::now(), alive: true });
    }
    for c in conns.iter_mut() {
        c.new_message();
        if !c.pump_send() {
            c.alive = false;
            st.errors += 1;
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    loop {
        let now = Instant::now();
        if now >= window.1 {
            break;
        }
        let timeout = (window.1 - now).as_millis().clamp(1, 50) as i32;
        // SAFETY: events has room for its length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, timeout) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            panic!("epoll_wait: {}", io::Error::last_os_error());
        }
        for ev in &events[..n as usize] {
            let c = &mut conns[ev.u64 as usize];
            if !c.alive {
                continue;
            }
            let ok = c.pump_send() && c.pump_recv(&mut buf, &mut st, window);
            if !ok {
                c.alive = false;
                st.errors += 1;
                close_fd(c.fd);
            }
        }
    }
    for c in &conns {
        if c.alive {
            close_fd(c.fd);
        }
    }
    close_fd(ep);
    st
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run_load(a: &Args) {
    let (streams, failed) = open_all(a);
    let opened = streams.len();
    let t0 = Instant::now();
    let ws = t0 + Duration::from_secs_f64(a.warmup);
    let we = ws + Duration::from_secs_f64(a.duration);
    let mut per: Vec<Vec<(usize, TcpStream)>> = (0..a.threads).map(|_| Vec::new()).collect();
    for (i, s) in streams.into_iter().enumerate() {
        per[i % a.threads].push((i, s));
    }
    let handles: Vec<_> = per
        .into_iter()
        .map(|v| {
            let (size, seed) = (a.size, a.seed);
            std::thread::spawn(move || worker(v, size, seed, (ws, we)))
        })
        .collect();
    std::thread::sleep(ws.saturating_duration_since(Instant::now()));
    say("MEASURE_START");
    std::thread::sleep(we.saturating_duration_since(Instant::now()));
    say("MEASURE_END");
    let mut tot = Stats::default();
    for h in handles {
        let s = h.join().expect("worker panicked");
        tot.hist.merge(&s.hist);
        tot.round_trips += s.round_trips;
        tot.errors += s.errors;
    }
    tot.errors += failed;
    let us = |ns: u64| ns as f64 / 1e3;
    say(&format!(
        "RESULT rtt_per_sec={:.0} round_trips={} p50_us={:.1} p99_us={:.1} max_us={:.1} errors={} conns={} conns_opened={} size={} duration_s={:.3}",
        tot.round_trips as f64 / a.duration,
        tot.round_trips,
        us(tot.hist.quantile(0.50)),
        us(tot.hist.quantile(0.99)),
        us(tot.hist.max()),
        tot.errors,
        a.conns,
        opened,
        a.size,
        a.duration
    ));
    debug_assert_eq!(tot.hist.count(), tot.round_trips);
}

fn run_idle(a: &Args, hold: f64) {
    let (mut streams, failed) = open_all(a);
    let mut errors = failed;
    let mut buf = vec![0u8; a.size];
    for (i, s) in streams.iter_mut().enumerate() {
        let mut msg = vec![0u8; a.size];
        Rng::new(a.seed, i as u64).fill(&mut msg);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let ok = s.write_all(&msg).is_ok() && s.read_exact(&mut buf).is_ok() && buf == msg;
        if !ok {
            errors += 1;
        }
    }
    say("READY");
    std::thread::sleep(Duration::from_secs_f64(hold));
    say(&format!("RESULT idle_conns={} errors={} conns={} size={}", streams.len(), errors, a.conns, a.size));
}

fn main() {
    let a = parse_args();
    raise_nofile();
    match a.idle {
        Some(hold) => run_idle(&a, hold),
        None => run_load(&a),
    }
}
