//! Benchmark echo server: `bench_echo PORT [buffer|array]`. Listens on 127.0.0.1:PORT, one
//! coroutine per connection, TCP_NODELAY, reads up to 4 KiB and writes it back. No printing;
//! runs forever.
//!
//! The 4 KiB buffer is, by default (`buffer`), the coroutine's scratch buffer
//! (`gort::spawn_with_buffer`: one stack page per idle connection); `array` puts a zeroed
//! `[u8; 4096]` in the handler's frame instead (two stack pages per idle connection).
use std::io::{Read, Write};

fn echo(c: &mut gort::net::TcpStream, buf: &mut [u8]) {
    let _ = c.set_nodelay(true);
    loop {
        match c.read(buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

fn main() {
    // `bench_echo PORT [MODE]`; the mode may also come first (`bench_echo MODE PORT`), which
    // is how benches/run.py, which appends the port, asks for `array`.
    let (mut port, mut array) = (7000u16, false);
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "buffer" => array = false,
            "array" => array = true,
            p => match p.parse() {
                Ok(p) => port = p,
                Err(_) => {
                    eprintln!("usage: bench_echo PORT [buffer|array] (got {p:?})");
                    std::process::exit(2);
                }
            },
        }
    }
    gort::run(move || {
        let l = gort::net::TcpListener::bind(("127.0.0.1", port)).expect("listen");
        loop {
            let Ok((mut c, _)) = l.accept() else { continue };
            if array {
                gort::go!({
                    let mut buf = [0u8; 4096];
                    echo(&mut c, &mut buf);
                });
            } else {
                gort::spawn_with_buffer(4096, move |buf| echo(&mut c, buf));
            }
        }
    });
}
