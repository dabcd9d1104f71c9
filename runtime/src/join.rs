//! Join handles: a one-shot result slot between a finished coroutine and its joiner.
//!
//! A spawned coroutine's result lives in its task (`slot.rs`, one allocation per spawn); the
//! [`JoinHandle`] holds the task. [`Packet`] is the standalone slot for `spawn_blocking` (and `spawn_blocking_deadline`,
//! whose joiner may give up at a deadline and leave the result to be dropped with the packet).
//! `Packet` states: `EMPTY`, `WAITING` (a joiner stored its unparker), `DONE` (the result is
//! written). The joiner writes `waiter` before its CAS `EMPTY -> WAITING` (Release); the
//! coroutine writes `result` before its swap to `DONE` (AcqRel) and reads `waiter` only if the
//! swap returned `WAITING`. Go has no join; this mirrors `std::thread::JoinHandle`.
use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::park::{self, Unparker};
use crate::task::{TaskRef, WaitReason};

const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;

pub(crate) struct Packet<T> {
    state: AtomicU8,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
    waiter: UnsafeCell<Option<Unparker>>,
}

// `result` and `waiter` are each written by one side before a Release/AcqRel state
// transition and read by the other side only after observing that transition with Acquire (see
// the module comment).
// SAFETY: so the two cells are never accessed concurrently; `T: Send` because the result moves
// from the coroutine's thread to the joiner's.
unsafe impl<T: Send> Sync for Packet<T> {}
// SAFETY: as above; the packet only moves `T` across threads, which `T: Send` allows.
unsafe impl<T: Send> Send for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Arc<Packet<T>> {
        Arc::new(Packet {
            state: AtomicU8::new(EMPTY),
            result: UnsafeCell::new(None),
            waiter: UnsafeCell::new(None),
        })
    }

    /// Called once, by the finishing coroutine.
    pub(crate) fn complete(&self, r: std::thread::Result<T>) {
        // SAFETY: only the coroutine writes `result`, once, before publishing DONE; the joiner
        // reads it only after seeing DONE.
        unsafe { *self.result.get() = Some(r) };
        // AcqRel: Release publishes `result`; Acquire pairs with the joiner's Release CAS that
        // published `waiter`.
        if self.state.swap(DONE, Ordering::AcqRel) == WAITING {
            // SAFETY: the joiner wrote `waiter` before its CAS to WAITING, which we observed,
            // and never touches it again.
            if let Some(u) = unsafe { (*self.waiter.get()).take() } {
                u.wake();
            }
        }
    }

    fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    fn take(&self) -> Option<std::thread::Result<T>> {
        if !self.is_done() {
            return None;
        }
        // SAFETY: DONE was observed with Acquire, so the coroutine's write is visible and it
        // will not touch `result` again; the joiner is unique (JoinHandle is not Clone).
        unsafe { (*self.result.get()).take() }
    }

    pub(crate) fn wait(&self, why: WaitReason) -> std::thread::Result<T> {
        match self.wait_until(None, why) {
            Some(r) => r,
            None => crate::overflow::throw("Packet::wait: no result without a deadline"),
        }
    }

    /// [`Packet::wait`] until `deadline` (none: without limit). `None` when the result is not
    /// there by then; the completer may still write it later, and it is dropped with the
    /// packet. Called at most once per packet (by its unique joiner).
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        why: WaitReason,
    ) -> Option<std::thread::Result<T>> {
        if !self.is_done() {
            // SAFETY: only the (unique) joiner writes `waiter`, once, before the CAS below; the
            // coroutine reads it only after seeing WAITING. A joiner that gives up at its
            // deadline never touches `waiter` again, so a late `complete` may still take it.
            unsafe { *self.waiter.get() = Some(park::unparker()) };
            // Release: publishes `waiter` (pairs with the AcqRel swap in `complete`).
            let _ =
                self.state
                    .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire);
            while !self.is_done() {
                match deadline {
                    None => park::park_reason(why),
                    Some(d) => {
                        if park::park_deadline(d, why) && !self.is_done() {
                            return None;
                        }
                    }
                }
            }
        }
        match self.take() {
            Some(r) => Some(r),
            None => crate::overflow::throw("Packet::wait: result taken twice"),
        }
    }
}

/// Why a coroutine produced no value: it panicked. Holds the panic payload.
pub struct JoinError {
    payload: Box<dyn Any + Send + 'static>,
    id: u64,
}

impl JoinError {
    /// The panic payload, as `std::thread::JoinHandle::join` returns it.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.payload
    }

    /// The panic message when the payload is a string.
    pub fn message(&self) -> Option<&str> {
        self.payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| self.payload.downcast_ref::<String>().map(|s| s.as_str()))
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinError(coroutine {} panicked: {:?})",
            self.id,
            self.message()
        )
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(m) => write!(f, "coroutine {} panicked: {m}", self.id),
            None => write!(f, "coroutine {} panicked", self.id),
        }
    }
}

impl std::error::Error for JoinError {}

/// Owned permission to wait for a coroutine's result, like `std::thread::JoinHandle`.
/// Dropping it detaches the coroutine.
pub struct JoinHandle<T> {
    pub(crate) task: TaskRef,
    /// The handle only ever yields a `T` (moved from the coroutine, `T: Send` at spawn), and
    /// `&JoinHandle` gives no access to it, so the handle is `Send + Sync` for any `T`.
    _result: PhantomData<fn() -> T>,
}

impl<T> JoinHandle<T> {
    /// The handle for `task`.
    ///
    /// # Safety
    /// `task.slot` was made by `Slot::new::<F, T>` with this `T`, and no other handle for
    /// `task` exists.
    pub(crate) unsafe fn from_task(task: TaskRef) -> JoinHandle<T> {
        JoinHandle {
            task,
            _result: PhantomData,
        }
    }

    /// Waits for the coroutine to finish: parks when called from a coroutine, blocks a plain
    /// thread. `Err` carries the panic payload if it panicked.
    pub fn join(self) -> Result<T, JoinError> {
        // SAFETY: `from_task`'s contract: the slot's result type is `T` and this handle, the
        // unique joiner, is consumed here.
        let r = unsafe {
            self.task
                .slot
                .wait::<T>(&self.task.slot_flags, WaitReason::Join)
        };
        r.map_err(|payload| JoinError {
            payload,
            id: self.task.ident.id,
        })
    }

    /// True once the coroutine has finished.
    pub fn is_finished(&self) -> bool {
        crate::slot::Slot::is_done(&self.task.slot_flags)
    }

    /// The coroutine's id.
    pub fn id(&self) -> u64 {
        self.task.ident.id
    }

    /// The coroutine's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.task.ident.name()
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .finish()
    }
}
