//! Stack-overflow reporting and fatal errors.
//!
//! What: a process-wide SIGSEGV/SIGBUS handler (run on a per-worker alternate signal
//! stack, since the faulting stack is the one that is full). If the fault address is
//! in a coroutine stack's guard page (`stack::find_guard`), it prints which coroutine
//! overflowed (the worker's current task, `sched::worker::running_ident`, which the
//! scheduler sets around each resume anyway; or, for a coroutine resumed outside a worker, the
//! thread-local [`CoroIdent`] given to [`set_running`]) and aborts. Any other fault is passed on to the handler that was installed
//! before ours (Rust's std has one for thread guard pages), or to the default action.
//! [`throw`] is the runtime's "broken invariant" exit.
//!
//! Invariants: the handler is async-signal-safe: no allocation, no locks, numbers are
//! formatted by hand into a stack buffer, output goes through `write(2)`. The pointer
//! given to [`set_running`] stays valid until it is replaced (caller's contract); the
//! worker's current task stays alive while it is set (see `worker::current_task`).
//!
//! Go counterpart: `runtime.throw` / `fatal error: stack overflow`, and the
//! `sigtramp`/`sighandler` chaining to pre-existing handlers (`sigfwdgo`). Go detects
//! overflow in the function prologue and grows the stack; Rust cannot move stacks, so
//! we detect it by the guard page fault and make it fatal with a precise message.
// The scheduler (merged separately) is the caller; until then parts are test-only.

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::{Once, OnceLock};

mod ident;
pub(crate) use ident::CoroIdent;

thread_local! {
    /// The coroutine this thread is running, or null. Const-initialized and without a
    /// destructor, so reading it from the signal handler is a plain TLS load.
    static RUNNING: Cell<*const CoroIdent> = const { Cell::new(ptr::null()) };
    /// This thread's alternate signal stack, unmapped at thread exit.
    static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// Records the coroutine the current thread is about to run (null: none), for coroutines
/// resumed outside a worker (the worker loop does not call it: the handler asks the worker
/// for its current task, which saves two TLS writes per switch). `p` must stay valid until
/// the next call on this thread; the signal handler reads it.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn set_running(p: *const CoroIdent) {
    RUNNING.with(|r| r.set(p));
}

/// Writes all of `bytes` to fd 2, async-signal-safely; errors are ignored.
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of the given length.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/// Prints `fatal error: <msg>` and aborts the process.
pub(crate) fn throw(msg: &str) -> ! {
    let mut m = Msg::new();
    m.push(b"fatal error: ");
    m.push(msg.as_bytes());
    m.push(b"\n");
    write_stderr(m.as_bytes());
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Fixed-size message buffer; silently truncates.
struct Msg {
    buf: [u8; 1024],
    len: usize,
}

impl Msg {
    fn new() -> Msg {
        Msg {
            buf: [0; 1024],
            len: 0,
        }
    }
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }
    fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Formats the overflow report for a guard hit of a `usable`-byte stack.
fn overflow_message(m: &mut Msg, who: Option<&CoroIdent>, usable: usize) {
    m.push(b"fatal error: ");
    match who {
        Some(c) => {
            m.push(b"coroutine ");
            m.push_u64(c.id);
            if let Some(name) = c.name() {
                m.push(b" \"");
                m.push(name.as_bytes());
                m.push(b"\"");
            }
            let site = c.site();
            m.push(b" (spawned at ");
            m.push(site.file().as_bytes());
            m.push(b":");
            m.push_u64(site.line().into());
            m.push(b":");
            m.push_u64(site.column().into());
            m.push(b")");
        }
        None => m.push(b"unknown coroutine"),
    }
    m.push(b" overflowed its ");
    m.push_u64((usable / 1024) as u64);
    m.push(b" KiB stack; raise it with gort::Builder::new().stack_size(..) or ");
    m.push(b"runtime::Builder::default_stack_size(..)\n");
}

static PREV_SEGV: OnceLock<libc::sigaction> = OnceLock::new();
static PREV_BUS: OnceLock<libc::sigaction> = OnceLock::new();

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers of SIGSEGV and
    // SIGBUS, for which si_addr is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(hit) = crate::stack::find_guard(addr) {
        let mut p = RUNNING.with(|r| r.get());
        if p.is_null() {
            p = crate::sched::worker::running_ident();
        }
        // SAFETY: `set_running`'s contract (a non-null pointer is valid until replaced), or
        // `running_ident`'s (valid while this thread resumes that task, which it was doing when
        // it faulted in a coroutine guard page).
        let who = unsafe { p.as_ref() };
        let mut m = Msg::new();
        overflow_message(&mut m, who, hit.usable_size);
        write_stderr(m.as_bytes());
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    let prev = if sig == libc::SIGBUS {
        PREV_BUS.get()
    } else {
        PREV_SEGV.get()
    };
    match prev {
        Some(old) if old.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the previous handler was registered with SA_SIGINFO, so
            // sa_sigaction holds a function of this signature; we pass our arguments on.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(old.sa_sigaction) };
            f(sig, info, ctx);
        }
        Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
            // SAFETY: without SA_SIGINFO a handler other than SIG_DFL/SIG_IGN is a
            // plain `fn(c_int)`.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old.sa_sigaction) };
            f(sig);
        }
        _ => {
            // Default action: restore it and return; the faulting instruction runs again
            // and the kernel kills the process with the original signal.
            // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask; sigaction is
            // async-signal-safe.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
    }
}

/// Installs the SIGSEGV/SIGBUS handler, once per process; saves the previous ones.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (sig, slot) in [(libc::SIGSEGV, &PREV_SEGV), (libc::SIGBUS, &PREV_BUS)] {
            // SAFETY: sigaction structs are plain data, valid when zeroed; we pass
            // valid pointers and a handler of the SA_SIGINFO signature.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, ptr::null(), &mut old) != 0 {
                    throw("overflow::install: sigaction query failed");
                }
                let _ = slot.set(old);
                let mut new: libc::sigaction = std::mem::zeroed();
                let h: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    handler;
                new.sa_sigaction = h as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(sig, &new, ptr::null_mut()) != 0 {
                    throw("overflow::install: sigaction failed");
                }
            }
        }
    });
}

/// Size of each worker's alternate signal stack.
const ALT_SIZE: usize = 64 * 1024;

/// An mmap'ed alternate signal stack with a guard page below it.
struct AltStack {
    map: *mut libc::c_void,
    len: usize,
}

impl AltStack {
    fn new() -> std::io::Result<AltStack> {
        let page = crate::stack::page_size();
        let len = ALT_SIZE + page;
        // SAFETY: a fresh anonymous private mapping; it aliases nothing.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let alt = AltStack { map, len };
        // SAFETY: the lowest page of our own mapping becomes the guard.
        if unsafe { libc::mprotect(map, page, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ss = libc::stack_t {
            // SAFETY: `page < len`, so the result stays inside the mapping.
            ss_sp: unsafe { map.cast::<u8>().add(page) }.cast(),
            ss_flags: 0,
            ss_size: ALT_SIZE,
        };
        // SAFETY: `ss` describes memory that stays mapped until `alt` drops, which
        // first disables the alternate stack if it is still this one.
        if unsafe { libc::sigaltstack(&ss, ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(alt)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: querying and disabling the alternate stack of this thread; we are not
        // running on it (thread-exit destructors run on the thread's normal stack).
        // Then unmapping our own mapping, which nothing uses any more.
        unsafe {
            let mut cur: libc::stack_t = std::mem::zeroed();
            let ours = self.map.cast::<u8>().add(self.len - ALT_SIZE).cast();
            if libc::sigaltstack(ptr::null(), &mut cur) == 0
                && cur.ss_sp == ours
                && cur.ss_flags & libc::SS_DISABLE == 0
            {
                let off = libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&off, ptr::null_mut());
            }
            libc::munmap(self.map, self.len);
        }
    }
}

/// Gives the calling (worker) thread a 64 KiB alternate signal stack, so the handler
/// can run when the coroutine stack is full. Idempotent per thread; freed at exit.
/// On failure (no memory) it warns: overflows on this thread then die as plain SIGSEGV.
pub(crate) fn init_thread() {
    ALT_STACK.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            match AltStack::new() {
                Ok(alt) => *slot = Some(alt),
                Err(e) => eprintln!("gort: warning: no signal stack for this thread ({e}); stack overflows will not be reported"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{test_child, StackPool, DEFAULT_STACK, MIN_STACK};
    use std::panic::Location;

    #[inline(never)]
    fn recurse(depth: u64) -> u64 {
        let buf = std::hint::black_box([depth as u8; 512]);
        if std::hint::black_box(depth) == u64::MAX {
            return 0;
        }
        recurse(depth + 1).wrapping_add(u64::from(buf[0]))
    }

    /// In the child: overflow a coroutine of `size` usable bytes, running as `who`.
    fn overflow_in_coroutine(size: usize, who: Option<&CoroIdent>) -> ! {
        install();
        init_thread();
        let pool = StackPool::new();
        let stack = pool.alloc(size, None).unwrap();
        let mut co =
            corosensei::Coroutine::with_stack(stack, |_: &corosensei::Yielder<(), ()>, ()| {
                recurse(0);
            });
        set_running(who.map_or(ptr::null(), |c| c as *const CoroIdent));
        co.resume(());
        std::process::exit(0); // unreachable if the guard works
    }

    #[test]
    fn overflow_names_the_coroutine() {
        let name = "overflow::tests::overflow_names_the_coroutine";
        let ident = CoroIdent::new(17, Some("worker-conn".into()), Location::caller());
        if test_child::is_child(name) {
            overflow_in_coroutine(DEFAULT_STACK, Some(&ident));
        }
        let out = test_child::run(name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(test_child::signal(&out), Some(libc::SIGABRT), "{err}");
        let want = format!(
            "fatal error: coroutine 17 \"worker-conn\" (spawned at {}:{}:{}) overflowed its 64 KiB stack; raise it with gort::Builder::new().stack_size(..)",
            ident.site().file(),
            ident.site().line(),
            ident.site().column()
        );
        assert!(err.contains(&want), "{err}");
    }

    #[test]
    fn overflow_of_unknown_coroutine() {
        let name = "overflow::tests::overflow_of_unknown_coroutine";
        if test_child::is_child(name) {
            overflow_in_coroutine(MIN_STACK, None);
        }
        let out = test_child::run(name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(test_child::signal(&out), Some(libc::SIGABRT), "{err}");
        assert!(
            err.contains("fatal error: unknown coroutine overflowed its 16 KiB stack"),
            "{err}"
        );
    }

    #[test]
    fn other_faults_are_chained() {
        let name = "overflow::tests::other_faults_are_chained";
        if test_child::is_child(name) {
            install();
            init_thread();
            // SAFETY: not safe: this write is meant to fault (child process).
            unsafe { ptr::write_volatile(8 as *mut u8, 1) };
            std::process::exit(0);
        }
        let out = test_child::run(name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(test_child::signal(&out), Some(libc::SIGSEGV), "{err}");
        assert!(!err.contains("overflowed"), "{err}");
    }

    #[test]
    fn throw_aborts_with_message() {
        let name = "overflow::tests::throw_aborts_with_message";
        if test_child::is_child(name) {
            throw("sched::park: broken invariant");
        }
        let out = test_child::run(name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(test_child::signal(&out), Some(libc::SIGABRT), "{err}");
        assert!(
            err.contains("fatal error: sched::park: broken invariant\n"),
            "{err}"
        );
    }

    #[test]
    fn message_formatting() {
        let mut m = Msg::new();
        m.push_u64(0);
        m.push(b" ");
        m.push_u64(u64::MAX);
        assert_eq!(m.as_bytes(), b"0 18446744073709551615");
        let mut m = Msg::new();
        for _ in 0..2000 {
            m.push(b"x");
        }
        assert_eq!(m.as_bytes().len(), 1024, "truncates instead of overflowing");
        let mut m = Msg::new();
        overflow_message(&mut m, None, 1 << 20);
        assert!(m
            .as_bytes()
            .starts_with(b"fatal error: unknown coroutine overflowed its 1024 KiB stack"));
    }

    #[test]
    fn init_thread_sets_alt_stack() {
        std::thread::spawn(|| {
            init_thread();
            init_thread(); // idempotent
                           // SAFETY: querying the current alternate stack into a local.
            let cur = unsafe {
                let mut cur: libc::stack_t = std::mem::zeroed();
                assert_eq!(libc::sigaltstack(ptr::null(), &mut cur), 0);
                cur
            };
            assert_eq!(cur.ss_size, ALT_SIZE);
            assert_eq!(cur.ss_flags & libc::SS_DISABLE, 0);
        })
        .join()
        .unwrap();
    }
}
