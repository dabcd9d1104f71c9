//! Waiter records of blocked channel operations (Go's `sudog`) and the one-shot selection
//! token shared by every record of one blocked operation (Go's `selectDone`).
//!
//! # Token
//! A blocked operation parks on a [`Token`]. Its `state` goes `WAITING -> SELECTED(arm)` (a
//! peer or `close` claimed it) or `WAITING -> ABORTED` (its owner gave up: timeout, or a
//! `select!` that saw an arm become ready while registering). The transitions are CAS, so
//! exactly one party wins: a value is never delivered twice nor lost. Tokens are one-shot.
//! A token nobody can abort (a plain send/recv without deadline) changes only under the
//! channel lock, so claiming it is a plain load and store there (`Waiter::abortable`).
//!
//! The winner moves the value through the record's slot, then `finish`es: `done` goes
//! `PENDING -> DONE` (the transfer is visible) and, once the winner has done everything that
//! needs the owner's coroutine or thread (the state change of the wake-up),
//! `DONE -> RELEASED`. After that store the winner touches neither the token nor the record.
//!
//! # Borrowed records (no reference counts)
//! The queues hold raw pointers ([`WaitPtr`]) to records that their owner keeps: a plain
//! send/recv keeps its record and its token on its own stack, a `select!` arm its record in
//! a box ([`Registered`], the token in an `Arc` that the records share).
//! The token wakes its owner through a [`BorrowedUnparker`], which holds no count either.
//! Validity rests on one rule: **an owner frees a record only once no peer can reach it**,
//! that is after (a) removing it from its queue under the channel lock, or (b) seeing its
//! token `RELEASED` by the winner that popped it. Peers reach records only under the channel
//! lock: either in a queue, or popped by them and dropped (claim lost) before they unlock,
//! or popped and claimed, and then released. So a record in a queue is always live, and the
//! owner, blocked in the operation until (a) or (b), is a live coroutine (or thread) while
//! the winner wakes it, which is what `BorrowedUnparker::begin_wake` requires.
//!
//! A plain operation cannot leave its frame early (no user code runs in it; an unwind with
//! the record queued aborts, see `QueuedGuard`); a `select!` record's box is freed by
//! [`Registered`]'s methods or its drop, which unregister it first; if a `Registered` is
//! leaked, so is its box, which stays valid.
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::park::{self, BorrowedUnparker, Wake};
use crate::task::WaitReason;

const WAITING: u32 = 0;
pub(super) const ABORTED: u32 = u32::MAX;

/// `Token::done`: no transfer yet.
const PENDING: u8 = 0;
/// The winner's transfer is visible; it still wakes the owner (touches the token).
const DONE: u8 = 1;
/// The winner is done with the token and the record.
const RELEASED: u8 = 2;

/// Selection token of one blocked operation (a plain send/recv or a whole `select!`).
pub(crate) struct Token {
    /// `WAITING`, `ABORTED`, or the selected arm plus one.
    state: AtomicU32,
    /// `PENDING`, `DONE` or `RELEASED` (see the module docs).
    done: AtomicU8,
    waker: BorrowedUnparker,
}

impl Token {
    /// A plain send/recv's token, for the caller.
    #[inline]
    pub(super) fn fresh() -> Token {
        Token {
            state: AtomicU32::new(WAITING),
            done: AtomicU8::new(PENDING),
            waker: BorrowedUnparker::current(),
        }
    }

    /// A token for a `select!` made by the caller.
    pub(crate) fn new() -> Arc<Token> {
        Arc::new(Token::fresh())
    }

    pub(super) fn is_waiting(&self) -> bool {
        self.state.load(Ordering::SeqCst) == WAITING
    }

    /// Claims the token for `arm`; the winner must transfer and then [`Token::finish`].
    fn try_select(&self, arm: u32) -> bool {
        self.state
            .compare_exchange(WAITING, arm + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// [`Token::try_select`] for a token nobody can abort (see `Waiter::abortable`).
    #[inline]
    fn select_unabortable(&self, arm: u32) -> bool {
        // Relaxed (load and store): the state of such a token changes only under the channel
        // lock (here; it is initialised before its record is published under that lock), so
        // the lock orders every access; its owner learns the outcome from `done` (Release in
        // `finish`, Acquire in `wait`/`take`).
        if self.state.load(Ordering::Relaxed) != WAITING {
            return false;
        }
        self.state.store(arm + 1, Ordering::Relaxed);
        true
    }

    /// The winner's last steps: publishes the transfer, wakes the owner and releases the
    /// token and its record. The returned [`Wake`] (it owns what it needs) finishes the
    /// wake-up when dropped.
    ///
    /// # Safety
    /// `t` is the token of a record the caller popped from a queue and claimed (under the
    /// channel lock), and this is the only `finish` of that claim. Until the `RELEASED` store
    /// the owner cannot free the token or the record, nor return from its wait (module docs);
    /// no reference into them outlives that store.
    #[inline]
    unsafe fn finish(t: *const Token) -> Wake {
        // Release: pairs with the Acquire loads of `done` in `wait`/`take`, publishing the
        // slot write.
        // SAFETY: the owner keeps the token live until it sees `RELEASED`, which only the last
        // store below writes; each reference into it lives for one call.
        unsafe { (*t).done.store(DONE, Ordering::Release) };
        // SAFETY: the owner is blocked in its wait until `RELEASED` (see above), which is
        // `begin_wake`'s contract.
        let wake = unsafe { (*t).waker.begin_wake() };
        // SAFETY: as above. Release: pairs with the Acquire loads in `wait_released`: our
        // accesses to the token and record happen before the owner frees them.
        unsafe { (*t).done.store(RELEASED, Ordering::Release) };
        wake
    }

    /// The owner gives up; false if a peer already claimed the token.
    pub(crate) fn try_abort(&self) -> bool {
        self.state
            .compare_exchange(WAITING, ABORTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The arm that was selected, if any.
    pub(crate) fn selected(&self) -> Option<usize> {
        match self.state.load(Ordering::SeqCst) {
            WAITING | ABORTED => None,
            s => Some((s - 1) as usize),
        }
    }

    /// Parks until a peer selected the token, finished its transfer and released the token
    /// (true), or until the deadline passed and the owner aborted the token (false). Only the
    /// token's owner (the coroutine or thread that made it) may wait on it. Inlined: one
    /// frame less across the switch (see `spawn::yield_now`).
    #[inline(always)]
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        loop {
            // Acquire: pairs with the Release stores in `finish`.
            if self.done.load(Ordering::Acquire) != PENDING {
                self.wait_released();
                return true;
            }
            match deadline {
                // SAFETY: we are the token's owner (see above), which made `waker`.
                None => unsafe { self.waker.park_own(WaitReason::Chan) },
                Some(d) => {
                    // Acquire: as above.
                    if park::park_deadline(d, WaitReason::Chan)
                        && self.done.load(Ordering::Acquire) == PENDING
                    {
                        if self.try_abort() {
                            return false;
                        }
                        // Claimed concurrently: the peer finishes within its critical section.
                        // Acquire: as above.
                        while self.done.load(Ordering::Acquire) == PENDING {
                            park::park_reason(WaitReason::Chan);
                        }
                        self.wait_released();
                        return true;
                    }
                }
            }
        }
    }

    /// Waits out the winner's last steps after `DONE` (a few instructions, see `finish`).
    /// On one worker the owner runs only after the winner's `Wake` made it runnable, when
    /// the token is already `RELEASED`, so this spins only when they run in parallel.
    #[inline]
    fn wait_released(&self) {
        // Acquire: pairs with the Release store of `RELEASED` in `finish`.
        if self.done.load(Ordering::Acquire) != RELEASED {
            self.wait_released_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn wait_released_slow(&self) {
        let mut spins = 0u32;
        // Acquire: as in `wait_released`.
        while self.done.load(Ordering::Acquire) != RELEASED {
            if spins < 100 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                // The winner was preempted between its two stores: let it run.
                std::thread::yield_now();
            }
        }
    }

    /// Whether a winner has released the token (its transfer is complete and visible).
    fn released(&self) -> bool {
        // Acquire: pairs with the Release store of `RELEASED` in `finish`.
        self.done.load(Ordering::Acquire) == RELEASED
    }
}

/// One queued send or receive. `slot` holds the value to send (sender) or the value
/// received (receiver). Access is exclusive by protocol, so it needs no lock:
/// 1. the owner fills it before publishing the record (under the channel lock);
/// 2. the peer that wins the token ([`WaitPtr::claim`]) moves a value in or out, then
///    finishes — no one else touches the slot meanwhile: other peers lose the claim and the
///    owner waits for `done` (or its own abort CAS fails);
/// 3. the owner reads it once the token is settled ([`Waiter::take`]: `RELEASED` seen with
///    Acquire, or the token aborted so no winner exists) and the record is out of its queue.
pub(crate) struct Waiter<T> {
    /// The token: a plain send/recv's own (a local of the operation, declared before the
    /// record so that it outlives it), or a `select!`'s shared one (kept alive by `_keep`).
    /// A pointer rather than an enum: no match on every access.
    tok: NonNull<Token>,
    /// A `select!`'s token, owned by the record.
    _keep: Option<Arc<Token>>,
    arm: u32,
    /// Whether the token can go `WAITING -> ABORTED` (a deadline, or a `select!`). If not,
    /// only a holder of the channel lock changes its state, and claiming it needs no CAS.
    abortable: bool,
    slot: UnsafeCell<Option<T>>,
}

impl<T> Waiter<T> {
    /// The record of a plain send (`v` is the value) or receive on token `tok` (from
    /// [`Token::fresh`]); `deadline`: it may abort.
    ///
    /// # Safety
    /// `tok` outlives the record (and is not moved meanwhile).
    #[inline]
    pub(super) unsafe fn plain(tok: &Token, v: Option<T>, deadline: bool) -> Waiter<T> {
        Waiter {
            tok: NonNull::from(tok),
            _keep: None,
            arm: 0,
            abortable: deadline,
            slot: UnsafeCell::new(v),
        }
    }

    /// The record of `select!` arm `arm`, on the select's token.
    pub(super) fn select(tok: &Arc<Token>, arm: usize, v: Option<T>) -> Waiter<T> {
        // The token stores arm + 1 next to two markers; `select!` has a handful of arms.
        let arm = match u32::try_from(arm) {
            Ok(a) if a < ABORTED - 1 => a,
            _ => crate::overflow::throw("Waiter::select: select arm index out of range"),
        };
        Waiter {
            tok: NonNull::from(&**tok),
            _keep: Some(tok.clone()),
            arm,
            abortable: true,
            slot: UnsafeCell::new(v),
        }
    }

    /// The token this record is selected through.
    #[inline]
    pub(crate) fn tok(&self) -> &Token {
        // SAFETY: the token outlives the record: a plain operation's by `plain`'s contract, a
        // `select!`'s because the record holds an `Arc` of it (`_keep`).
        unsafe { self.tok.as_ref() }
    }

    /// The arm this record selects its token for.
    pub(super) fn arm(&self) -> usize {
        self.arm as usize
    }

    /// True if this record belongs to the `select!` of token `t`.
    pub(super) fn shares(&self, t: &Arc<Token>) -> bool {
        std::ptr::eq(self.tok.as_ptr(), Arc::as_ptr(t))
    }

    /// The owner takes the slot's value once the token is settled and the record is out of
    /// its queue (step 3 on [`Waiter`]).
    pub(crate) fn take(&self) -> Option<T> {
        let t = self.tok();
        let settled = t.released() || t.state.load(Ordering::SeqCst) == ABORTED;
        if !settled {
            crate::overflow::throw("Waiter::take: slot read before its token settled");
        }
        // SAFETY: the token is settled: either its winner released it (after which it never
        // touches the record) or it was aborted (no winner exists), and the caller removed
        // the record from its queue (or the winner popped it), so no peer reaches it. Other
        // records of a `select!` token are never touched by the winner. So access is
        // exclusive.
        unsafe { (*self.slot.get()).take() }
    }
}

impl<T> Waiter<T> {
    /// The owner takes the slot's value of a record it has just removed from its queue under
    /// the channel lock (or found already popped), whatever its token's state.
    ///
    /// # Safety
    /// The caller removed the record (or saw it gone) under the lock of its channel, after
    /// the record was queued there. Then no peer reaches it: peers meet records only under
    /// that lock, and a winner that popped it released it before unlocking.
    pub(super) unsafe fn take_removed(&self) -> Option<T> {
        // SAFETY: caller contract: access is exclusive.
        unsafe { (*self.slot.get()).take() }
    }
}

// SAFETY: the only non-`Sync` field is `slot`, whose accesses from different threads never
// overlap (the protocol above) and are ordered by the channel lock or by `done`'s
// Release/Acquire pair; values of `T` cross threads through it, hence `T: Send`.
unsafe impl<T: Send> Sync for Waiter<T> {}

/// A queued record: a pointer to a [`Waiter`] its owner keeps live while it is queued (see
/// the module docs). Only reached under the channel lock.
pub(super) struct WaitPtr<T>(NonNull<Waiter<T>>);

// SAFETY: a `WaitPtr` moves between threads only inside the locked channel state; the record
// it points to is `Sync` for `T: Send` (see `Waiter`), and values of `T` cross threads
// through it, hence `T: Send`.
unsafe impl<T: Send> Send for WaitPtr<T> {}

impl<T> WaitPtr<T> {
    /// # Safety
    /// The caller pushes the pointer on a queue of a channel (under its lock) and keeps the
    /// record live, unmoved and not mutably borrowed until no peer can reach it (module
    /// docs: removed under the lock, or released by its winner).
    pub(super) unsafe fn new(w: &Waiter<T>) -> WaitPtr<T> {
        WaitPtr(NonNull::from(w))
    }

    /// True if this points to `w`.
    pub(super) fn is(&self, w: &Waiter<T>) -> bool {
        std::ptr::eq(self.0.as_ptr(), w)
    }

    /// The record, for a look under the channel lock while it is queued.
    pub(super) fn get(&self) -> &Waiter<T> {
        // SAFETY: a `WaitPtr` exists only in a queue of a locked state, or popped from one by
        // the lock holder, which uses it before it unlocks: the owner keeps the record live
        // meanwhile (see `new`). The borrow ends before the caller's lock does.
        unsafe { self.0.as_ref() }
    }

    /// Selects the record's token for its arm; `None` if it was already settled. Call it on
    /// a record just popped from its queue, under the lock.
    #[inline]
    pub(super) fn claim(self) -> Option<Claim<T>> {
        let w = self.get();
        let t = w.tok();
        let won = if w.abortable {
            t.try_select(w.arm)
        } else {
            t.select_unabortable(w.arm)
        };
        won.then_some(Claim(self))
    }
}

impl<T> PartialEq for WaitPtr<T> {
    fn eq(&self, o: &WaitPtr<T>) -> bool {
        self.0 == o.0
    }
}

/// Proof that the caller won a popped record's token: exclusive access to its slot (step 2
/// of the protocol on [`Waiter`]). Dropping it finishes the token (sets `done`, wakes the
/// owner, releases the record).
pub(super) struct Claim<T>(WaitPtr<T>);

impl<T> Claim<T> {
    pub(super) fn put(&self, v: T) {
        // SAFETY: a `Claim` exists only for the winner of the token, before it finishes (in
        // `drop`): nobody else accesses the slot meanwhile (see `Waiter`), and the record is
        // live (the owner waits for `RELEASED`).
        unsafe { *self.0.get().slot.get() = Some(v) }
    }

    pub(super) fn take(&self) -> Option<T> {
        // SAFETY: as in `put`.
        unsafe { (*self.0.get().slot.get()).take() }
    }
}

impl<T> Drop for Claim<T> {
    #[inline]
    fn drop(&mut self) {
        let t: *const Token = self.0.get().tok();
        // SAFETY: we claimed the token of a popped record, once (`Claim` is not `Clone`).
        let wake = unsafe { Token::finish(t) };
        drop(wake);
    }
}
