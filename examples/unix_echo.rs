//! Unix-socket echo: serves on a socket file with `serve`, a client sends a line and reads
//! it back; closing the listener removes the file. Prints and exits 0.
use std::io::{BufRead, BufReader};

fn main() {
    let path = std::env::temp_dir().join(format!("gort-unix-echo-{}.sock", std::process::id()));
    let p = path.to_string_lossy().into_owned();
    gort::run(move || {
        let l = std::sync::Arc::new(gort::net::listen("unix", &p).expect("listen"));
        let l2 = l.clone();
        let srv = gort::go!(gort::net::serve(&**l2, |c| {
            let mut r = BufReader::new(&*c);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let _ = c.write(line.as_bytes());
                line.clear();
            }
        }));
        let c = gort::net::dial("unix", &p).expect("dial");
        c.write(b"hello over unix\n").unwrap();
        let mut back = String::new();
        BufReader::new(&*c).read_line(&mut back).unwrap();
        print!("unix echo: {back}");
        l.close().unwrap();
        srv.join().unwrap().unwrap();
        println!(
            "socket file removed: {}",
            !std::path::Path::new(&p).exists()
        );
    });
}
