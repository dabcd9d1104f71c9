//! UDP echo: a server coroutine echoes datagrams; the client sends three (one empty) and
//! checks the echoes. Prints and exits 0.
fn main() {
    gort::run(|| {
        let srv = gort::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = srv.local_addr().unwrap();
        gort::go!({
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = srv.recv_from(&mut buf) {
                let _ = srv.send_to(&buf[..n], from);
            }
        });
        let c = gort::net::dial("udp", &addr.to_string()).expect("dial");
        for msg in [&b"ping"[..], b"", b"gort udp"] {
            c.write(msg).unwrap();
            let mut buf = [0u8; 1500];
            let n = c.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], msg);
            println!("udp echo: {:?}", String::from_utf8_lossy(&buf[..n]));
        }
    });
}
