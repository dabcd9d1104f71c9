//! Re-running the test binary on one test, to observe fatal signals in isolation.
use std::process::{Command, Output};

const ENV: &str = "GORT_TEST_CHILD";

/// True when this process is the child re-run for test `name`.
pub(crate) fn is_child(name: &str) -> bool {
    std::env::var(ENV).is_ok_and(|v| v == name)
}

/// Runs exactly test `name` (full path, e.g. `stack::tests::x`) in a child.
pub(crate) fn run(name: &str) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, name)
        .output()
        .expect("spawn test child")
}

/// The signal that killed the child, if any.
pub(crate) fn signal(out: &Output) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&out.status)
}
