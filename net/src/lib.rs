//! gort-net: Go's `net` package on gort's netpoller.
