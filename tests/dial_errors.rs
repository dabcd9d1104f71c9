//! Dial and error-text tests (Go: net/error_test.go TestDialError behaviours).
use std::io::ErrorKind;
use std::time::Duration;

// Go: TestDialError / the error string format of *OpError
#[test]
fn refused_text_and_kind() {
    gort::run(|| {
        let e = gort::net::dial("tcp", "127.0.0.1:1").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(
            e.to_string(),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert_eq!(gort::net::raw_os_error(&e), Some(libc::ECONNREFUSED));
    });
}

// Go: TestDialTimeout-ish: a huge timeout must not overflow; localhost skips the resolver.
#[test]
fn huge_timeout_and_localhost() {
    gort::run(|| {
        let l = gort::net::listen("tcp", "localhost:0").unwrap();
        let port = l.addr().socket_addr().unwrap().port();
        let c =
            gort::net::dial_timeout("tcp", &format!("localhost:{port}"), Duration::MAX).unwrap();
        assert!(c.remote_addr().to_string().ends_with(&format!(":{port}")));
        let e = gort::net::TcpStream::connect_timeout(
            &"127.0.0.1:1".parse().unwrap(),
            Duration::from_secs(u64::MAX),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    });
}

// Unknown networks and bad addresses are errors, not panics.
#[test]
fn bad_inputs() {
    gort::run(|| {
        let e = gort::net::dial("tcpx", "127.0.0.1:1").unwrap_err();
        assert_eq!(e.to_string(), "dial tcpx: unknown network tcpx");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = gort::net::listen("ipx", ":0").unwrap_err();
        assert_eq!(e.to_string(), "listen ipx: unknown network ipx");
        assert!(gort::net::dial("tcp", "127.0.0.1").is_err());
        assert_eq!(
            gort::net::split_host_port("[::1]:80").unwrap(),
            ("::1", "80")
        );
    });
}

// Go: TestDialError / the DNSError text: names other than localhost are resolved on the
// blocking pool (getaddrinfo); a `.invalid` name (RFC 6761: never resolves) fails with Go's
// "no such host" and kind NotFound, for every dialing surface.
#[test]
fn resolver_name() {
    gort::run(|| {
        let text = "dial tcp: lookup nonexistent.invalid: no such host";
        let errs = [
            gort::net::dial_timeout("tcp", "nonexistent.invalid:80", Duration::from_secs(5))
                .unwrap_err(),
            gort::net::dial("tcp", "nonexistent.invalid:80").unwrap_err(),
            gort::net::TcpStream::connect("nonexistent.invalid:80").unwrap_err(),
        ];
        for e in errs {
            assert_eq!(
                (e.kind(), e.to_string().as_str()),
                (ErrorKind::NotFound, text)
            );
        }
        let e = gort::net::dial("udp6", "Nonexistent.INVALID:53")
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "dial udp6: lookup Nonexistent.INVALID: no such host"
        );
    });
    // A plain thread (no pool) gets the same.
    let e = gort::net::dial("tcp", "nonexistent.invalid:80")
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

// Go: TestLookupPort behaviours: service names work in addresses, as in `net.Dial("tcp",
// "host:http")`; an unknown name is a clear error with Go's text.
#[test]
fn service_names_as_ports() {
    gort::run(|| {
        assert_eq!(gort::net::lookup_port("tcp", "http").unwrap(), 80);
        assert_eq!(gort::net::lookup_port("tcp6", "HTTPS").unwrap(), 443);
        assert_eq!(gort::net::lookup_port("udp", "domain").unwrap(), 53);
        assert_eq!(gort::net::lookup_port("tcp", "8080").unwrap(), 8080);
        assert_eq!(
            gort::net::lookup_port("tcp", "65536").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // An unknown name fails before any connect, with Go's text.
        let e = gort::net::dial("tcp", "127.0.0.1:no-such-service")
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "dial tcp: lookup tcp/no-such-service: unknown port"
        );
        // Dialing by name: "tcpmux" is port 1 in /etc/services (nothing listens there on
        // loopback), so the name must reach connect(2) as port 1. Skipped without the file.
        if gort::net::lookup_port("tcp", "tcpmux").is_ok() {
            let e = gort::net::dial("tcp", "127.0.0.1:tcpmux").err().unwrap();
            assert_eq!(
                e.to_string(),
                "dial tcp 127.0.0.1:1: connect: connection refused"
            );
        }
        let e = gort::net::listen_packet("udp", "127.0.0.1:nope")
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "listen udp: lookup udp/nope: unknown port");
    });
}
