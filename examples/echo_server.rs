//! Line-for-line port of the Go TCP echo server (see docs/porting.md for the mapping).
//!
//! Listens on localhost:25000; one coroutine per connection echoes lines back.
//! `--exit-after N`: exit after N connections have closed (for the one-line demo).
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};

use gort::net::{self, Conn};

static CLOSED: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let exit_after: Option<usize> = std::env::args()
        .skip_while(|a| a != "--exit-after")
        .nth(1)
        .and_then(|n| n.parse().ok());
    gort::run(move || {
        let l = net::listen("tcp", "localhost:25000").unwrap_or_else(|e| panic!("{e}")); // log.Fatal
                                                                                         // defer l.Close(): the listener is closed when `l` drops.
        loop {
            let conn = l.accept().unwrap_or_else(|e| panic!("{e}"));
            gort::go!(handle_tcp_client(conn, exit_after));
        }
    });
}

fn handle_tcp_client(conn: Box<dyn Conn>, exit_after: Option<usize>) {
    // defer conn.Close(): `conn` closes when it drops at the end of this function.
    println!(
        "new connection: [{} --> {}]",
        conn.local_addr(),
        conn.remote_addr()
    );
    let mut r = std::io::BufReader::new(&*conn);
    let (mut inb, mut out) = (0, 0);
    loop {
        // Bytes, as Go's strings are: a line need not be UTF-8.
        let mut line = Vec::new();
        let res = r.read_until(b'\n', &mut line);
        inb += line.len();
        if res.is_err() || !line.ends_with(b"\n") {
            break; // Go's ReadString returns io.EOF when no delimiter is found
        }
        // Go's `n` on error: the bytes that went out before it.
        let n = conn.write(&line).unwrap_or_else(|e| gort::net::written(&e));
        out += n;
    }
    println!("closing connection: read {inb} bytes, wrote {out} bytes");
    if exit_after.is_some_and(|n| CLOSED.fetch_add(1, Ordering::SeqCst) + 1 >= n) {
        std::process::exit(0);
    }
}
