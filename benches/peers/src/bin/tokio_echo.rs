//! tokio echo server: multi-thread runtime (default worker count), one task per
//! connection, TCP_NODELAY, 4 KiB read buffer, writes everything back.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn handle(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn main() {
    let port = gort_bench_peers::port_arg("tokio_echo");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(([127, 0, 0, 1], port).into()).expect("bind");
        let listener = sock.listen(1024).expect("listen");
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(handle(s));
                }
                Err(e) => {
                    // EMFILE etc.: back off briefly instead of spinning.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}
