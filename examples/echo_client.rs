//! Client for `echo_server`: dials localhost:25000, sends N lines (argv[1], default 5), reads
//! each echo back, checks it, prints a summary, exits 0. While the server is still starting
//! (connection refused) it retries the dial for up to 5 seconds.
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use gort::net;

fn fatal(e: impl std::fmt::Display) -> ! {
    eprintln!("echo_client: {e}");
    std::process::exit(1)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let ok = gort::run(move || {
        let give_up = Instant::now() + Duration::from_secs(5);
        let conn = loop {
            match net::dial("tcp", "localhost:25000") {
                Ok(c) => break c,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < give_up =>
                {
                    gort::time::sleep(Duration::from_millis(50));
                }
                Err(e) => fatal(e),
            }
        };
        let mut r = BufReader::new(&*conn);
        for i in 0..n {
            let msg = format!("hello {i} from gort\n");
            conn.write(msg.as_bytes()).unwrap_or_else(|e| fatal(e));
            let mut back = String::new();
            r.read_line(&mut back).unwrap_or_else(|e| fatal(e));
            if back != msg {
                fatal(format!("echo mismatch: sent {msg:?}, got {back:?}"));
            }
        }
        conn.close().unwrap_or_else(|e| fatal(e));
        n
    });
    println!("echo_client: {ok} lines echoed correctly");
}
