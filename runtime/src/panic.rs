//! Panic reporting for coroutines.
//!
//! Panics are caught at the coroutine boundary (spawn.rs) and handed to `join`. This hook
//! makes the message name the coroutine, the way std names the thread:
//! `coroutine 7 "conn" panicked at src/main.rs:3:5:` followed by the message; with
//! `RUST_BACKTRACE` set it prints a backtrace. Panics outside coroutines go to the hook that
//! was installed before ours. Go prints `panic: msg` plus `goroutine N [running]` and exits;
//! here the worker and the process live on.
use std::backtrace::{Backtrace, BacktraceStatus};
use std::io::Write;
use std::sync::Once;

use crate::sched::worker;

pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let Some(t) = worker::current_task() else {
                prev(info);
                return;
            };
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(|s| s.as_str()))
                .unwrap_or("Box<dyn Any>");
            let loc = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_else(|| "<unknown>".into());
            let name = match t.ident.name() {
                Some(n) => format!(" \"{n}\""),
                None => String::new(),
            };
            let bt = Backtrace::capture();
            let mut out = format!(
                "\ncoroutine {}{name} panicked at {loc}:\n{msg}\n",
                t.ident.id
            );
            match bt.status() {
                BacktraceStatus::Captured => out.push_str(&format!("stack backtrace:\n{bt}\n")),
                _ => out.push_str(
                    "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
                ),
            }
            let _ = std::io::stderr().lock().write_all(out.as_bytes());
        }));
    });
}
