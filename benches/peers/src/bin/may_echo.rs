//! may echo server: workers = number of CPUs, one coroutine (`go!`) per
//! connection, TCP_NODELAY, 4 KiB read buffer, writes everything back.
//! may's `TcpListener::bind` already listens with backlog 1024.

use std::io::{Read, Write};

fn main() {
    let port = gort_bench_peers::port_arg("may_echo");
    may::config().set_workers(gort_bench_peers::ncpus());
    let listener = may::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let h = may::go!(move || loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                may::go!(move || {
                    let _ = s.set_nodelay(true);
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                eprintln!("accept: {e}");
                may::coroutine::sleep(std::time::Duration::from_millis(10));
            }
        }
    });
    let _ = h.join();
}
