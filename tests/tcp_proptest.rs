//! Every byte arrives in order through an echo, whatever the write chunking.
#![allow(clippy::needless_borrow)] // `(&s).read(..)` spells out the shared-reference Read impl.
use std::io::{Read, Write};

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn echo_random_chunks(data in proptest::collection::vec(any::<u8>(), 0..200_000), cuts in proptest::collection::vec(1usize..20_000, 1..40)) {
        let got = gort::run(move || {
            let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let c = gort::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            gort::go!({
                let mut b = [0u8; 3000];
                loop {
                    match (&s).read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => (&s).write_all(&b[..n]).unwrap(),
                    }
                }
            });
            let c = std::sync::Arc::new(c);
            let w = c.clone();
            let d2 = data.clone();
            gort::go!({
                let mut i = 0;
                let mut k = 0;
                while i < d2.len() {
                    let n = cuts[k % cuts.len()].min(d2.len() - i);
                    (&*w).write_all(&d2[i..i + n]).unwrap();
                    i += n;
                    k += 1;
                }
                w.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut got = Vec::new();
            (&*c).read_to_end(&mut got).unwrap();
            (got, data)
        });
        prop_assert!(got.0 == got.1);
    }
}
