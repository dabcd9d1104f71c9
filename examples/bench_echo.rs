//! Benchmark echo server: `bench_echo PORT`. Listens on 127.0.0.1:PORT, one coroutine per
//! connection, TCP_NODELAY, reads up to 4 KiB and writes it back. No printing; runs forever.
use std::io::{Read, Write};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(7000);
    gort::run(move || {
        let l = gort::net::TcpListener::bind(("127.0.0.1", port)).expect("listen");
        loop {
            let Ok((mut c, _)) = l.accept() else { continue };
            gort::go!({
                let _ = c.set_nodelay(true);
                let mut buf = [0u8; 4096];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
}
