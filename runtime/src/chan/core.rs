//! Channel core: the state behind a `Sender`/`Receiver` pair, its waiter queues and the
//! one-shot selection token shared by every waiter record of one blocked operation.
//!
//! Design (Go's `runtime/chan.go` + `select.go`, simplified):
//! * One lock per channel (a spin lock, lock.rs) guards the buffer, the `closed` flag and two
//!   FIFO queues of waiter records (`recvq`, `sendq`). It is held only for short critical
//!   sections and never across a park. There is no poisoning: no user code runs under it
//!   except `T`'s destructor-free moves, so the state is always consistent.
//! * A blocked operation parks on a [`Token`]. A token goes `WAITING -> SELECTED(arm)` (a
//!   peer or `close` claimed it) or `WAITING -> ABORTED` (its owner gave up: timeout, or a
//!   `select!` that saw an arm become ready while registering). The transitions are CAS, so
//!   exactly one party wins, like Go's `selectDone`: a value is never delivered twice nor
//!   lost. Tokens are one-shot: a retrying select makes a fresh one, so a stale record (token
//!   no longer `WAITING`) can be dropped by whoever meets it. A token nobody can abort (a
//!   plain send/recv without deadline) changes only under the channel lock, so claiming it is
//!   a plain load and store there (`Waiter::abortable`), one locked RMW less per hand-off.
//! * The winner of the CAS moves the value through the record's `slot` and then sets `done`
//!   (Release; the waiter reads it with Acquire before touching the slot) and unparks.
//! * Unbuffered channels are a real rendezvous: a sender parks with its value in its record's
//!   slot until a receiver takes it. A sender record whose slot is still full when it is
//!   selected was woken by `close`: the send failed and the value goes back to the caller.
//!
//! * Waiter records are recycled (Go's per-P `sudog` cache, made per channel): a peer that
//!   pops a record keeps it in the channel's `free` list instead of dropping it, and the next
//!   blocking operation on the channel reuses it once its previous owner has dropped its handle
//!   (`Arc::get_mut` proves that, so reuse needs no `unsafe`). A plain send/recv uses the
//!   token stored inline in its record (`own`); only `select!` shares one `Arc<Token>` between
//!   records. In steady state a blocking operation therefore allocates nothing and clones no
//!   `TaskRef` (the cached unparker is kept while the same coroutine reuses the record).
//!
//! Differences from Go: send on a closed channel is an error, not a panic; dropping the last
//! receiver also closes the channel (buffered values are dropped, senders get errors).
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::lock::{SpinGuard, SpinLock};
use super::waitq::WaitQueue;
use crate::park::{self, unparker, Unparker};
use crate::task::WaitReason;

const WAITING: u32 = 0;
const ABORTED: u32 = u32::MAX;

/// Selection token of one blocked operation (a plain send/recv or a whole `select!`).
pub(crate) struct Token {
    /// `WAITING`, `ABORTED`, or the selected arm plus one. A `u32` keeps a waiter record small
    /// (1M coroutines each parked on a channel hold 1M records).
    state: AtomicU32,
    done: AtomicBool,
    unparker: Unparker,
}

impl Token {
    fn fresh() -> Token {
        Token {
            state: AtomicU32::new(WAITING),
            done: AtomicBool::new(false),
            unparker: unparker(),
        }
    }

    pub(crate) fn new() -> Arc<Token> {
        Arc::new(Token::fresh())
    }

    /// Re-arms a recycled token for the caller (exclusive access: no atomics needed).
    #[inline]
    fn reset(&mut self) {
        *self.state.get_mut() = WAITING;
        *self.done.get_mut() = false;
        if !self.unparker.is_current() {
            self.unparker = unparker();
        }
    }

    fn is_waiting(&self) -> bool {
        self.state.load(Ordering::SeqCst) == WAITING
    }

    /// Claims the token for `arm`; the winner must transfer and then call [`Token::finish`].
    fn try_select(&self, arm: u32) -> bool {
        self.state
            .compare_exchange(WAITING, arm + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// [`Token::try_select`] for a token nobody can abort (see `Waiter::abortable`).
    #[inline]
    fn select_unabortable(&self, arm: u32) -> bool {
        // Relaxed (load and store): the state of such a token changes only under the channel
        // lock (here, and in `reset` before the record is published under that lock), so the
        // lock orders every access; its owner learns the outcome from `done` (Release in
        // `finish`, Acquire in `wait`/`take`).
        if self.state.load(Ordering::Relaxed) != WAITING {
            return false;
        }
        self.state.store(arm + 1, Ordering::Relaxed);
        true
    }

    fn finish(&self) {
        // Release: pairs with the Acquire loads of `done` in `wait`, publishing the slot write.
        self.done.store(true, Ordering::Release);
        self.unparker.unpark();
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

    /// Parks until a peer selected the token and finished its transfer (true), or until the
    /// deadline passed and the owner aborted the token (false). Inlined: one frame less
    /// across the switch (see `spawn::yield_now`).
    #[inline]
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.done.load(Ordering::Acquire) {
                return true;
            }
            match deadline {
                None => park::park_reason(WaitReason::Chan),
                Some(d) => {
                    if park::park_deadline(d, WaitReason::Chan)
                        && !self.done.load(Ordering::Acquire)
                    {
                        if self.try_abort() {
                            return false;
                        }
                        // Claimed concurrently: the peer finishes within its critical section.
                        while !self.done.load(Ordering::Acquire) {
                            park::park_reason(WaitReason::Chan);
                        }
                        return true;
                    }
                }
            }
        }
    }
}

/// One queued send or receive. `slot` holds the value to send (sender) or the value
/// received (receiver). Access is exclusive by protocol, so it needs no lock:
/// 1. the owner fills it before publishing the record (under the channel lock);
/// 2. the peer that wins the token's CAS ([`Waiter::claim`]) moves a value in or out, then
///    sets `done` (Release) — no one else touches the slot meanwhile: other peers lose the
///    CAS and the owner waits for `done` (or its own abort CAS fails);
/// 3. the owner reads it once the token is settled ([`Waiter::take`]: `done` seen with
///    Acquire, or the token aborted so no winner exists).
pub(crate) struct Waiter<T> {
    /// The token of a plain send/recv.
    own: Token,
    /// The shared token of a `select!`; when set, `own` is unused.
    shared: Option<Arc<Token>>,
    arm: u32,
    /// Whether the token can go `WAITING -> ABORTED` (a deadline, or a `select!`). If not,
    /// only a holder of the channel lock changes its state, and claiming it needs no CAS.
    abortable: bool,
    slot: UnsafeCell<Option<T>>,
}

// SAFETY: the only non-`Sync` field is `slot`, whose accesses from different threads never
// overlap (the protocol above) and are ordered by the channel lock or by `done`'s
// Release/Acquire pair; values of `T` cross threads through it, hence `T: Send`.
unsafe impl<T: Send> Sync for Waiter<T> {}

/// Proof that the caller won a record's token: exclusive access to its slot (step 2 of the
/// protocol on [`Waiter`]). Dropping it finishes the token (sets `done`, unparks the owner).
struct Claim<'a, T>(&'a Waiter<T>);

impl<T> Claim<'_, T> {
    fn put(&self, v: T) {
        // SAFETY: a `Claim` exists only for the winner of the token's CAS, before `done` is
        // set (in `drop`): nobody else accesses the slot meanwhile (see `Waiter`).
        unsafe { *self.0.slot.get() = Some(v) }
    }

    fn take(&self) -> Option<T> {
        // SAFETY: as in `put`.
        unsafe { (*self.0.slot.get()).take() }
    }
}

impl<T> Drop for Claim<'_, T> {
    fn drop(&mut self) {
        self.0.tok().finish();
    }
}

impl<T> Waiter<T> {
    /// The token this record is selected through.
    pub(crate) fn tok(&self) -> &Token {
        self.shared.as_deref().unwrap_or(&self.own)
    }

    /// Selects this record's token for its arm; `None` if it was already settled.
    fn claim(&self) -> Option<Claim<'_, T>> {
        let t = self.tok();
        let won = if self.abortable {
            t.try_select(self.arm)
        } else {
            t.select_unabortable(self.arm)
        };
        won.then_some(Claim(self))
    }

    /// The owner takes the slot's value once the token is settled (step 3 on [`Waiter`]).
    pub(crate) fn take(&self) -> Option<T> {
        let t = self.tok();
        // Acquire: pairs with the Release store of `done` in `Token::finish`, so the winner's
        // slot write happened before our read.
        let settled = t.done.load(Ordering::Acquire) || t.state.load(Ordering::SeqCst) == ABORTED;
        assert!(settled, "chan: waiter slot read before its token settled");
        // SAFETY: the token is settled: either its winner finished (`done`, after which it
        // never touches the slot) or it was aborted (no winner exists). Other records of a
        // `select!` token are never touched by the winner. So access is exclusive.
        unsafe { (*self.slot.get()).take() }
    }
}

pub(crate) enum TryRecv<T> {
    Value(T),
    Closed,
    Empty,
}

pub(crate) enum TrySend<T> {
    Sent,
    Closed(T),
    Full(T),
}

pub(crate) struct State<T> {
    buf: VecDeque<T>,
    closed: bool,
    recvq: WaitQueue<Arc<Waiter<T>>>,
    sendq: WaitQueue<Arc<Waiter<T>>>,
    /// Records popped from the queues, for reuse (see the module docs).
    free: Vec<Arc<Waiter<T>>>,
}

/// Most records a channel keeps for reuse (bounds memory after a burst of blocked peers).
const FREE_MAX: usize = 128;

impl<T> State<T> {
    /// A waiter record for the caller: a recycled one whose previous owner is gone, or new.
    /// `deadline`: the owner may abort (a timed plain send/recv; a `select!` always may).
    fn waiter(
        &mut self,
        shared: Option<&Arc<Token>>,
        arm: usize,
        v: Option<T>,
        deadline: bool,
    ) -> Arc<Waiter<T>> {
        let abortable = deadline || shared.is_some();
        // The token stores arm + 1 next to two markers; `select!` has a handful of arms.
        let arm = match u32::try_from(arm) {
            Ok(a) if a < ABORTED - 1 => a,
            _ => crate::overflow::throw("State::waiter: select arm index out of range"),
        };
        while let Some(mut w) = self.free.pop() {
            // Unique: the previous owner dropped its handle, so nobody else can see it.
            if let Some(m) = Arc::get_mut(&mut w) {
                if shared.is_none() {
                    m.own.reset();
                }
                m.shared = shared.cloned();
                m.arm = arm;
                m.abortable = abortable;
                *m.slot.get_mut() = v;
                return w;
            }
            // Still held by its owner (just woken, not yet returned): let the owner free it.
        }
        Arc::new(Waiter {
            own: Token::fresh(),
            shared: shared.cloned(),
            arm,
            abortable,
            slot: UnsafeCell::new(v),
        })
    }

    /// Keeps a record popped from a queue for reuse.
    fn recycle(&mut self, w: Arc<Waiter<T>>) {
        if self.free.len() < FREE_MAX {
            self.free.push(w);
        }
    }

    fn try_send(&mut self, v: T, cap: usize) -> TrySend<T> {
        if self.closed {
            return TrySend::Closed(v);
        }
        while let Some(w) = self.recvq.pop_front() {
            let Some(c) = w.claim() else {
                self.recycle(w);
                continue;
            };
            c.put(v);
            drop(c);
            self.recycle(w);
            return TrySend::Sent;
        }
        if self.buf.len() < cap {
            self.buf.push_back(v);
            return TrySend::Sent;
        }
        TrySend::Full(v)
    }

    fn try_recv(&mut self) -> TryRecv<T> {
        if let Some(v) = self.buf.pop_front() {
            // A slot freed up: move the oldest blocked sender's value in (keeps FIFO order).
            while let Some(w) = self.sendq.pop_front() {
                let won = match w.claim() {
                    Some(c) => {
                        if let Some(x) = c.take() {
                            self.buf.push_back(x);
                        }
                        true
                    }
                    None => false,
                };
                self.recycle(w);
                if won {
                    break;
                }
            }
            return TryRecv::Value(v);
        }
        while let Some(w) = self.sendq.pop_front() {
            let x = w.claim().and_then(|c| c.take());
            self.recycle(w);
            if let Some(x) = x {
                return TryRecv::Value(x);
            }
        }
        if self.closed {
            TryRecv::Closed
        } else {
            TryRecv::Empty
        }
    }

    fn peer_waiting(q: &WaitQueue<Arc<Waiter<T>>>, me: &Arc<Token>) -> bool {
        q.iter()
            .any(|w| !w.shared.as_ref().is_some_and(|t| Arc::ptr_eq(t, me)) && w.tok().is_waiting())
    }
}

/// The shared channel object.
pub(crate) struct Chan<T> {
    st: SpinLock<State<T>>,
    cap: usize,
    pub(crate) senders: AtomicUsize,
    pub(crate) receivers: AtomicUsize,
}

impl<T> Chan<T> {
    pub(crate) fn new(cap: usize) -> Chan<T> {
        Chan {
            st: SpinLock::new(State {
                buf: VecDeque::new(),
                closed: false,
                recvq: WaitQueue::default(),
                sendq: WaitQueue::default(),
                free: Vec::new(),
            }),
            cap,
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        }
    }

    #[inline]
    fn lock(&self) -> SpinGuard<'_, State<T>> {
        self.st.lock()
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().buf.len()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn try_send(&self, v: T) -> TrySend<T> {
        let cap = self.cap;
        self.lock().try_send(v, cap)
    }

    pub(crate) fn try_recv(&self) -> TryRecv<T> {
        self.lock().try_recv()
    }

    /// Blocking send; `Full` means the deadline passed.
    pub(crate) fn send(&self, v: T, deadline: Option<Instant>) -> TrySend<T> {
        let mut st = self.lock();
        let v = match st.try_send(v, self.cap) {
            TrySend::Full(v) => v,
            r => return r,
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return TrySend::Full(v);
        }
        let w = st.waiter(None, 0, Some(v), deadline.is_some());
        st.sendq.push_back(w.clone());
        drop(st);
        if !w.own.wait(deadline) {
            self.lock().sendq.retain(|x| !Arc::ptr_eq(x, &w));
            return match w.take() {
                Some(v) => TrySend::Full(v),
                None => TrySend::Sent,
            };
        }
        match w.take() {
            None => TrySend::Sent,
            Some(v) => TrySend::Closed(v),
        }
    }

    /// Blocking receive; `Empty` means the deadline passed.
    pub(crate) fn recv(&self, deadline: Option<Instant>) -> TryRecv<T> {
        let mut st = self.lock();
        match st.try_recv() {
            TryRecv::Empty => {}
            r => return r,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return TryRecv::Empty;
        }
        let w = st.waiter(None, 0, None, deadline.is_some());
        st.recvq.push_back(w.clone());
        drop(st);
        if !w.own.wait(deadline) {
            self.lock().recvq.retain(|x| !Arc::ptr_eq(x, &w));
            return TryRecv::Empty;
        }
        match w.take() {
            Some(v) => TryRecv::Value(v),
            None => TryRecv::Closed,
        }
    }

    /// Closes; wakes every waiter. Returns false if it was already closed.
    pub(crate) fn close(&self) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        st.closed = true;
        let q: Vec<_> = st.recvq.take_all().chain(st.sendq.take_all()).collect();
        for w in q {
            drop(w.claim());
        }
        true
    }

    /// Last receiver gone: close and drop buffered values (outside the lock).
    pub(crate) fn disconnect_receivers(&self) {
        self.close();
        let buf = std::mem::take(&mut self.lock().buf);
        drop(buf);
    }

    /// `select!` registration of a receive: `Err(())` if the arm is ready now.
    pub(crate) fn register_recv(&self, tok: &Arc<Token>, arm: usize) -> Result<Arc<Waiter<T>>, ()> {
        let mut st = self.lock();
        if !st.buf.is_empty() || st.closed || State::peer_waiting(&st.sendq, tok) {
            return Err(());
        }
        let w = st.waiter(Some(tok), arm, None, true);
        st.recvq.push_back(w.clone());
        Ok(w)
    }

    /// `select!` registration of a send: gives the value back if the arm is ready now.
    pub(crate) fn register_send(
        &self,
        tok: &Arc<Token>,
        arm: usize,
        v: T,
    ) -> Result<Arc<Waiter<T>>, T> {
        let mut st = self.lock();
        if st.closed || st.buf.len() < self.cap || State::peer_waiting(&st.recvq, tok) {
            return Err(v);
        }
        let w = st.waiter(Some(tok), arm, Some(v), true);
        st.sendq.push_back(w.clone());
        Ok(w)
    }

    /// Removes a record of an aborted or not-selected `select!` arm.
    pub(crate) fn unregister(&self, w: &Arc<Waiter<T>>, send: bool) {
        let mut st = self.lock();
        let q = if send { &mut st.sendq } else { &mut st.recvq };
        q.retain(|x| !Arc::ptr_eq(x, w));
    }
}
