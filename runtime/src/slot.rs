//! A spawned coroutine's closure, then its result, stored inside its task (one allocation per
//! spawn), with the join protocol between the finishing coroutine and its `JoinHandle`.
//!
//! What: a [`Slot`] holds, in a fixed inline buffer, first the spawn closure `F`, then the
//! coroutine's `std::thread::Result<T>`. A value larger than [`INLINE`] bytes (or aligned to
//! more than 8) is boxed and the box stored inline instead. A static per-`(F, T)` vtable knows
//! how to run, and drop, what the buffer holds. Being untyped and fixed-size, the slot keeps
//! `Task` a sized type behind a thin `TaskRef` (the runqueues and `Unparker` words need thin
//! pointers), whose cells the task pool reuses (see slab.rs).
//!
//! The slot's two flag bytes (join state and what the buffer holds) are a separate
//! [`SlotFlags`] that the task keeps with its other small fields (a `Slot` holding them would
//! pad them to a word: 8 bytes more in every task header), so every method takes both.
//!
//! Invariants: `holds` says what the buffer holds (`NONE`, `CLOSURE`, `RESULT`) and is
//! accessed, like the buffer, by one thread at a time, handed over by happens-before edges:
//! the spawner builds the slot by value (before the task is published on a queue); the
//! owner worker takes the closure once ([`Slot::start`], after `Task::take_fresh`), writes
//! the result, then publishes it with the AcqRel swap of `state` to `DONE`; the unique joiner
//! reads it after observing `DONE` with Acquire. Drop has `&mut` access. `waiter` follows the
//! same protocol as before: the joiner writes it before its CAS `EMPTY -> WAITING` (Release),
//! the completer reads it only if its swap returned `WAITING`.
//!
//! Go counterpart: none (Go has no join); the inline closure mirrors how `newproc` copies the
//! `go` statement's arguments into the new `g`'s frame rather than a separate object.
use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::park::{self, Unparker};
use crate::task::WaitReason;

/// Bytes of closure or result stored inline; larger values are boxed. Three words: a closure
/// capturing up to three pointers or integers, and any `std::thread::Result` of a value up to
/// two words (a panic payload is a two-word box), stay inline. Every byte here is in every task
/// header (see task.rs); 32 made the header a 128-byte cell instead of 112 (then).
pub(crate) const INLINE: usize = 24;

/// Join states.
const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;

/// What the buffer holds.
const NONE: u8 = 0;
const CLOSURE: u8 = 1;
const RESULT: u8 = 2;

#[repr(C, align(8))]
struct Buf(MaybeUninit<[u8; INLINE]>);

/// How to run and drop the contents of one `(F, T)` slot.
struct VTable {
    /// Takes the closure out of the buffer, runs it (or drops it when `err` is set) and writes
    /// the result into the buffer. Never unwinds.
    run: unsafe fn(*mut u8, Option<io::Error>),
    drop_closure: unsafe fn(*mut u8),
    drop_result: unsafe fn(*mut u8),
}

struct Vt<F, T>(PhantomData<(F, T)>);

impl<F: FnOnce() -> T, T> Vt<F, T> {
    const VT: VTable = VTable {
        run: run::<F, T>,
        drop_closure: drop_as::<F>,
        drop_result: drop_as::<std::thread::Result<T>>,
    };
}

const fn fits<X>() -> bool {
    mem::size_of::<X>() <= INLINE && mem::align_of::<X>() <= mem::align_of::<Buf>()
}

/// Writes `x` (or a box of it) at `buf`.
///
/// # Safety
/// `buf` points to a `Buf` that holds nothing, and nobody else accesses it.
unsafe fn put<X>(buf: *mut u8, x: X) {
    if fits::<X>() {
        // SAFETY: `X` fits the buffer in size and alignment (checked above); caller contract.
        unsafe { buf.cast::<X>().write(x) }
    } else {
        // SAFETY: a `Box` is one aligned word, which always fits; caller contract.
        unsafe { buf.cast::<Box<X>>().write(Box::new(x)) }
    }
}

/// Moves out the `X` that [`put`] wrote at `buf`.
///
/// # Safety
/// `buf` holds an `X` written by `put::<X>`, nobody else accesses it, and the caller treats
/// the buffer as empty afterwards.
unsafe fn take<X>(buf: *mut u8) -> X {
    if fits::<X>() {
        // SAFETY: caller contract: an `X` was written here inline and is moved out once.
        unsafe { buf.cast::<X>().read() }
    } else {
        // SAFETY: caller contract: a `Box<X>` was written here and is moved out once.
        *unsafe { buf.cast::<Box<X>>().read() }
    }
}

/// # Safety
/// As for [`take`].
unsafe fn drop_as<X>(buf: *mut u8) {
    // SAFETY: caller contract (same as `take`).
    drop(unsafe { take::<X>(buf) })
}

/// # Safety
/// `buf` holds an `F` written by `put::<F>`; nobody else accesses it; afterwards it holds a
/// `std::thread::Result<T>` written by `put`.
unsafe fn run<F: FnOnce() -> T, T>(buf: *mut u8, err: Option<io::Error>) {
    // SAFETY: caller contract.
    let f = unsafe { take::<F>(buf) };
    let r = match err {
        None => panic::catch_unwind(AssertUnwindSafe(f)),
        Some(e) => {
            // A panicking destructor of a capture must not unwind into the worker loop.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(f)));
            Err(Box::new(format!("coroutine could not start: {e}")) as Box<_>)
        }
    };
    // SAFETY: caller contract: the closure was moved out, the buffer is free.
    unsafe { put(buf, r) }
}

/// A slot's join state and what its buffer holds (see the module comment): kept apart from
/// the [`Slot`] so that the task packs them with its other small fields.
pub(crate) struct SlotFlags {
    state: AtomicU8,
    holds: UnsafeCell<u8>,
}

/// A task's closure-then-result (see the module comment); its flags are a [`SlotFlags`].
/// Not `Drop`: its owner calls [`Slot::drop_contents`] with the flags.
pub(crate) struct Slot {
    vt: &'static VTable,
    /// `Unparker::into_raw` of the joiner, or 0.
    waiter: UnsafeCell<usize>,
    buf: UnsafeCell<Buf>,
}

// The buffer holds an `F: Send` or a `std::thread::Result<T>` with `T: Send` (required by
// `Slot::new`), and `waiter` an `Unparker` (Send + Sync). Non-atomic fields are accessed by one
// thread at a time, handed over by the happens-before edges in the module comment.
// SAFETY: so moving a slot between threads moves only `Send` data.
unsafe impl Send for Slot {}
// SAFETY: `holds` is a plain byte, accessed under the protocol of the module comment.
unsafe impl Send for SlotFlags {}
// SAFETY: shared access touches `holds` only under the protocol of the module comment (never
// concurrently); `state` is atomic.
unsafe impl Sync for SlotFlags {}
// SAFETY: shared access from several threads touches `buf`, `holds` and `waiter` only under the
// protocol of the module comment (never concurrently); the rest is atomic or immutable.
unsafe impl Sync for Slot {}

impl Slot {
    /// A slot holding `f`, whose result will be a `std::thread::Result<T>`, and its flags.
    pub(crate) fn new<F, T>(f: F) -> (SlotFlags, Slot)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut buf = Buf(MaybeUninit::uninit());
        // SAFETY: the buffer is new, empty and ours alone.
        unsafe { put::<F>(buf.0.as_mut_ptr().cast(), f) };
        let flags = SlotFlags {
            state: AtomicU8::new(EMPTY),
            holds: UnsafeCell::new(CLOSURE),
        };
        let slot = Slot {
            vt: &Vt::<F, T>::VT,
            waiter: UnsafeCell::new(0),
            buf: UnsafeCell::new(buf),
        };
        (flags, slot)
    }

    fn buf(&self) -> *mut u8 {
        self.buf.get().cast()
    }

    /// Runs the closure (or, with `err`, drops it and records that the coroutine could not
    /// start), stores the result and wakes the joiner.
    ///
    /// # Safety
    /// `flags` are this slot's (made with it by `new`). Called at most once per slot, by the
    /// worker that took the task fresh (`Task::take_fresh` returned `Some`), on its thread.
    pub(crate) unsafe fn start(&self, flags: &SlotFlags, err: Option<io::Error>) {
        // SAFETY: caller contract: we are the only thread touching `holds`/`buf` until DONE.
        let holds = unsafe { &mut *flags.holds.get() };
        if *holds != CLOSURE {
            crate::overflow::throw("Slot::start: no closure (started twice?)");
        }
        // Marked empty first: should `run` unwind after all, the buffer leaks rather than
        // being dropped twice.
        *holds = NONE;
        // SAFETY: the buffer holds the `F` this vtable was made for; we have exclusive access.
        unsafe { (self.vt.run)(self.buf(), err) };
        *holds = RESULT;
        // AcqRel: Release publishes `buf`/`holds`; Acquire pairs with the joiner's Release CAS
        // that published `waiter`.
        if flags.state.swap(DONE, Ordering::AcqRel) == WAITING {
            // SAFETY: the joiner wrote `waiter` before its CAS to WAITING, which we observed,
            // and never touches it again.
            let w = unsafe { mem::replace(&mut *self.waiter.get(), 0) };
            if w != 0 {
                // SAFETY: `w` came from `Unparker::into_raw` and is decoded once (we cleared it).
                unsafe { Unparker::from_raw(w) }.wake();
            }
        }
    }

    /// True once the result is stored (`flags` are this slot's).
    pub(crate) fn is_done(flags: &SlotFlags) -> bool {
        // Acquire: pairs with the AcqRel swap in `start`.
        flags.state.load(Ordering::Acquire) == DONE
    }

    /// Waits for the result and takes it.
    ///
    /// # Safety
    /// The slot and `flags` were made together by `Slot::new::<F, T>` with this `T`, and the
    /// caller is its unique joiner, calling `wait` at most once.
    pub(crate) unsafe fn wait<T>(
        &self,
        flags: &SlotFlags,
        why: WaitReason,
    ) -> std::thread::Result<T> {
        if !Slot::is_done(flags) {
            let me = park::unparker().into_raw();
            // SAFETY: only the (unique) joiner writes `waiter`, before the CAS below; the
            // completer reads it only after seeing WAITING.
            unsafe { *self.waiter.get() = me };
            // Release: publishes `waiter` (pairs with the AcqRel swap in `start`).
            if flags
                .state
                .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Already DONE: the completer never reads `waiter`; take our unparker back.
                // SAFETY: as above, and `me` is decoded once (the word is cleared).
                drop(unsafe { Unparker::from_raw(mem::replace(&mut *self.waiter.get(), 0)) });
            }
            while !Slot::is_done(flags) {
                park::park_reason(why);
            }
        }
        // SAFETY: DONE was observed with Acquire, so the completer's writes are visible and it
        // will not touch `holds`/`buf` again; the joiner is unique (caller contract).
        let holds = unsafe { &mut *flags.holds.get() };
        if *holds != RESULT {
            crate::overflow::throw("Slot::wait: result taken twice");
        }
        *holds = NONE;
        // SAFETY: the buffer holds the `std::thread::Result<T>` that `run::<F, T>` wrote (caller
        // contract on `T`), and we just marked it empty.
        unsafe { take::<std::thread::Result<T>>(self.buf()) }
    }

    /// Drops what the buffer holds and the joiner's unparker, if any (the slot's `Drop`,
    /// called by its owner with `&mut` access to both halves).
    pub(crate) fn drop_contents(&mut self, flags: &mut SlotFlags) {
        let buf = self.buf();
        match *flags.holds.get_mut() {
            // SAFETY: `&mut self`: nobody else accesses the buffer; `holds` says what it holds
            // and the vtable was made for the slot's `(F, T)`.
            CLOSURE => unsafe { (self.vt.drop_closure)(buf) },
            // SAFETY: as above.
            RESULT => unsafe { (self.vt.drop_result)(buf) },
            _ => {}
        }
        let w = *self.waiter.get_mut();
        if w != 0 {
            // SAFETY: a non-zero word came from `Unparker::into_raw` and was never decoded.
            drop(unsafe { Unparker::from_raw(w) });
        }
        *flags.holds.get_mut() = NONE;
        *self.waiter.get_mut() = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// A slot with its flags, dropped like a task drops them.
    struct Both(SlotFlags, Slot);

    fn mk<F: FnOnce() -> T + Send + 'static, T: Send + 'static>(f: F) -> Both {
        let (flags, slot) = Slot::new(f);
        Both(flags, slot)
    }

    impl Both {
        /// # Safety
        /// As for [`Slot::start`].
        unsafe fn start(&self, err: Option<io::Error>) {
            // SAFETY: caller contract; the flags are this slot's.
            unsafe { self.1.start(&self.0, err) }
        }

        /// # Safety
        /// As for [`Slot::wait`].
        unsafe fn wait<T>(&self, why: WaitReason) -> std::thread::Result<T> {
            // SAFETY: caller contract; the flags are this slot's.
            unsafe { self.1.wait(&self.0, why) }
        }
    }

    impl Drop for Both {
        fn drop(&mut self) {
            self.1.drop_contents(&mut self.0);
        }
    }

    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn small_and_large_closures_and_results() {
        let s = mk(|| 7u8);
        // SAFETY: first and only start, on this thread.
        unsafe { s.start(None) };
        // SAFETY: made with T = u8; unique joiner.
        assert_eq!(unsafe { s.wait::<u8>(WaitReason::Join) }.unwrap(), 7);

        let big = [3u64; 16];
        let s = mk(move || big);
        // SAFETY: as above.
        unsafe { s.start(None) };
        // SAFETY: T = [u64; 16]; unique joiner.
        let got = unsafe { s.wait::<[u64; 16]>(WaitReason::Join) };
        assert_eq!(got.unwrap(), big);
    }

    #[test]
    fn panics_and_start_errors_become_err() {
        let s = mk(|| -> u32 { panic!("boom") });
        // SAFETY: first and only start.
        unsafe { s.start(None) };
        // SAFETY: T = u32.
        assert!(unsafe { s.wait::<u32>(WaitReason::Join) }.is_err());

        let n = Arc::new(AtomicUsize::new(0));
        let c = CountDrop(n.clone());
        let s = mk(move || drop(c));
        // SAFETY: first and only start.
        unsafe { s.start(Some(io::Error::other("no stack"))) };
        assert_eq!(
            n.load(Ordering::SeqCst),
            1,
            "closure dropped on a failed start"
        );
        // SAFETY: T = ().
        let e = unsafe { s.wait::<()>(WaitReason::Join) }.unwrap_err();
        assert!(e.downcast_ref::<String>().unwrap().contains("no stack"));
    }

    #[test]
    fn drop_releases_closure_or_result() {
        let n = Arc::new(AtomicUsize::new(0));
        // Never started: the closure (and what it captured) is dropped.
        let c = CountDrop(n.clone());
        drop(mk(move || drop(c)));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        // Finished, never joined: the result is dropped (inline and boxed).
        let n2 = n.clone();
        let s = mk(move || CountDrop(n2));
        // SAFETY: first and only start.
        unsafe { s.start(None) };
        drop(s);
        assert_eq!(n.load(Ordering::SeqCst), 2);
        let n3 = n.clone();
        let s = mk(move || (CountDrop(n3), [0u64; 8]));
        // SAFETY: first and only start.
        unsafe { s.start(None) };
        drop(s);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn joiner_on_another_thread_is_woken() {
        let s = Arc::new(mk(|| String::from("hi")));
        let s2 = s.clone();
        let j = std::thread::spawn(move || {
            // SAFETY: T = String; this thread is the unique joiner.
            unsafe { s2.wait::<String>(WaitReason::Join) }.unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(10));
        // SAFETY: first and only start.
        unsafe { s.start(None) };
        assert_eq!(j.join().unwrap(), "hi");
    }
}
