//! Client for `echo_server`: dials localhost:25000, sends N lines (argv[1], default 5), reads
//! each echo back, checks it, prints a summary, exits 0.
use std::io::{BufRead, BufReader};

use gort::net;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let ok = gort::run(move || {
        let conn = net::dial("tcp", "localhost:25000").unwrap_or_else(|e| panic!("{e}"));
        let mut r = BufReader::new(&*conn);
        for i in 0..n {
            let msg = format!("hello {i} from gort\n");
            conn.write(msg.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let mut back = String::new();
            r.read_line(&mut back).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, msg, "echo mismatch");
        }
        conn.close().unwrap();
        n
    });
    println!("echo_client: {ok} lines echoed correctly");
}
