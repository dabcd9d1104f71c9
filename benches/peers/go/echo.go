// Go echo server for gort's benchmark harness: net.Listen + one goroutine per
// connection, 4 KiB buffer, write everything back. TCP_NODELAY is Go's default
// (set explicitly anyway). Backlog is the kernel's somaxconn (Go's choice).
//
// Build: go build -o echo echo.go    Run: ./echo PORT
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func handle(c net.Conn) {
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: echo PORT")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go handle(c)
	}
}
