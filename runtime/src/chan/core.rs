//! Channel core: the state behind a `Sender`/`Receiver` pair and the blocking operations
//! (Go's `runtime/chan.go`, simplified). Waiter records and tokens are in waiter.rs.
//!
//! Design:
//! * One lock per channel (a spin lock, lock.rs) guards the buffer, the `closed` flag and two
//!   FIFO queues of waiter records (`recvq`, `sendq`). It is held only for short critical
//!   sections and never across a park. There is no poisoning: no user code runs under it
//!   except `T`'s destructor-free moves, so the state is always consistent.
//! * A blocked operation queues a record and parks on its token (waiter.rs); a peer that
//!   pops the record and wins the token moves the value through the record and wakes the
//!   owner. Unbuffered channels are a real rendezvous: a sender parks with its value in its
//!   record's slot until a receiver takes it. A sender record whose slot is still full when
//!   it is selected was woken by `close`: the send failed and the value goes back to the
//!   caller.
//! * No allocation and no reference count per blocking operation: a plain send/recv keeps its
//!   record and token on its own stack, and the queues point to it (Go's
//!   `sudog`s are cached per P; ours need no cache). The owner returns only once no peer can
//!   reach the record (waiter.rs). Only `select!` boxes its records ([`Registered`]) and
//!   shares one `Arc<Token>` between them.
//!
//! Differences from Go: send on a closed channel is an error, not a panic; dropping the last
//! receiver also closes the channel (buffered values are dropped, senders get errors).
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use super::lock::{SpinGuard, SpinLock};
use super::waiter::{Token, WaitPtr, Waiter};
use super::waitq::WaitQueue;

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
    recvq: WaitQueue<WaitPtr<T>>,
    sendq: WaitQueue<WaitPtr<T>>,
}

impl<T> State<T> {
    fn try_send(&mut self, v: T, cap: usize) -> TrySend<T> {
        if self.closed {
            return TrySend::Closed(v);
        }
        while let Some(w) = self.recvq.pop_front() {
            let Some(c) = w.claim() else {
                continue;
            };
            c.put(v);
            drop(c);
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
                if let Some(c) = w.claim() {
                    if let Some(x) = c.take() {
                        self.buf.push_back(x);
                    }
                    break;
                }
            }
            return TryRecv::Value(v);
        }
        while let Some(w) = self.sendq.pop_front() {
            if let Some(x) = w.claim().and_then(|c| c.take()) {
                return TryRecv::Value(x);
            }
        }
        if self.closed {
            TryRecv::Closed
        } else {
            TryRecv::Empty
        }
    }

    /// Is a record of another operation than the `select!` of `me` waiting in `q`?
    fn peer_waiting(q: &WaitQueue<WaitPtr<T>>, me: &Arc<Token>) -> bool {
        q.iter().any(|w| {
            let w = w.get();
            !w.shares(me) && w.tok().is_waiting()
        })
    }
}

/// Aborts if a plain operation unwinds while its record, on its stack, is still queued
/// (nothing in the wait can panic today; this keeps a future panic from becoming a
/// use-after-free). Defused with `mem::forget` once the record is out of reach.
struct QueuedGuard;

impl Drop for QueuedGuard {
    fn drop(&mut self) {
        crate::overflow::throw("Chan: unwinding with a waiter record still queued");
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
        let tok = Token::fresh();
        // SAFETY: `tok` is declared before `w`, so it outlives it, and neither moves.
        let w = unsafe { Waiter::plain(&tok, Some(v), deadline.is_some()) };
        let guard = QueuedGuard;
        // SAFETY: `w` (and `tok`) stay in this frame, unmoved and only shared, until no peer
        // can reach them: below, we return only after `wait` saw the token released by its winner, or
        // after removing the record under the lock; an unwind meanwhile aborts (`guard`).
        st.sendq.push_back(unsafe { WaitPtr::new(&w) });
        drop(st);
        let r = if tok.wait(deadline) {
            match w.take() {
                None => TrySend::Sent,
                Some(v) => TrySend::Closed(v),
            }
        } else {
            self.lock().sendq.retain(|x| !x.is(&w));
            match w.take() {
                Some(v) => TrySend::Full(v),
                None => TrySend::Sent,
            }
        };
        std::mem::forget(guard);
        r
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
        let tok = Token::fresh();
        // SAFETY: `tok` is declared before `w`, so it outlives it, and neither moves.
        let w = unsafe { Waiter::plain(&tok, None, deadline.is_some()) };
        let guard = QueuedGuard;
        // SAFETY: as in `send`.
        st.recvq.push_back(unsafe { WaitPtr::new(&w) });
        drop(st);
        let r = if tok.wait(deadline) {
            match w.take() {
                Some(v) => TryRecv::Value(v),
                None => TryRecv::Closed,
            }
        } else {
            self.lock().recvq.retain(|x| !x.is(&w));
            TryRecv::Empty
        };
        std::mem::forget(guard);
        r
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
    pub(crate) fn register_recv(
        &self,
        tok: &Arc<Token>,
        arm: usize,
    ) -> Result<Registered<'_, T>, ()> {
        let mut st = self.lock();
        if !st.buf.is_empty() || st.closed || State::peer_waiting(&st.sendq, tok) {
            return Err(());
        }
        let r = Registered::new(self, Waiter::select(tok, arm, None), false);
        // SAFETY: the box lives until `Registered` frees it, after unregistering it or
        // seeing it released by its winner (see `Registered`).
        st.recvq.push_back(unsafe { WaitPtr::new(r.rec()) });
        Ok(r)
    }

    /// `select!` registration of a send: gives the value back if the arm is ready now.
    pub(crate) fn register_send(
        &self,
        tok: &Arc<Token>,
        arm: usize,
        v: T,
    ) -> Result<Registered<'_, T>, T> {
        let mut st = self.lock();
        if st.closed || st.buf.len() < self.cap || State::peer_waiting(&st.recvq, tok) {
            return Err(v);
        }
        let r = Registered::new(self, Waiter::select(tok, arm, Some(v)), true);
        // SAFETY: as in `register_recv`.
        st.sendq.push_back(unsafe { WaitPtr::new(r.rec()) });
        Ok(r)
    }
}

/// A `select!` arm's record, boxed, queued on `chan`. Its methods and its drop free the box
/// only once no peer can reach it (waiter.rs): after removing it from its queue under the
/// lock, or after its token was released by the winner that popped it. Leaking a
/// `Registered` leaks the box, which stays valid for the peers that may still meet it.
pub(crate) struct Registered<'a, T> {
    chan: &'a Chan<T>,
    rec: NonNull<Waiter<T>>,
    send: bool,
}

impl<'a, T> Registered<'a, T> {
    fn new(chan: &'a Chan<T>, w: Waiter<T>, send: bool) -> Registered<'a, T> {
        Registered {
            chan,
            rec: NonNull::from(Box::leak(Box::new(w))),
            send,
        }
    }

    fn rec(&self) -> &Waiter<T> {
        // SAFETY: the box is live until `free` (only called by the consuming methods), and
        // nobody mutates a queued record except through its `UnsafeCell` slot and atomics.
        unsafe { self.rec.as_ref() }
    }

    /// The arm was not selected (or the select aborted): removes the record from its queue
    /// and hands back its value (a send arm's, which no peer took).
    pub(crate) fn unregister(self) -> Option<T> {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never used again (nor dropped).
        unsafe { me.unregister_and_free() }
    }

    /// # Safety
    /// Called once; the `Registered` is not used afterwards (its record is freed).
    unsafe fn unregister_and_free(&self) -> Option<T> {
        {
            let mut st = self.chan.lock();
            let q = if self.send {
                &mut st.sendq
            } else {
                &mut st.recvq
            };
            q.retain(|x| !x.is(self.rec()));
        }
        // SAFETY: out of the queue under the lock: no peer reaches the record any more, and a
        // winner (if the token was selected through it) released it before unlocking.
        let v = unsafe { self.rec().take_removed() };
        // SAFETY: as just said, nobody else can reach the box; caller contract: once.
        unsafe { self.free() };
        v
    }

    /// The token was selected through this record: takes the result (a receive's value, or
    /// a send's value back when `close` woke it) without taking the lock.
    pub(crate) fn complete(self) -> Option<T> {
        let me = std::mem::ManuallyDrop::new(self);
        let w = me.rec();
        if w.tok().selected() != Some(w.arm()) {
            crate::overflow::throw("Registered::complete: token not selected through this arm");
        }
        // `take` checks that the winner released the token: it popped the record and no
        // longer touches it, so nobody else can reach the box.
        let v = w.take();
        // SAFETY: as just said.
        unsafe { me.free() };
        v
    }

    /// # Safety
    /// No peer can reach the record (see the type docs); called once.
    unsafe fn free(&self) {
        // SAFETY: caller contract; the box came from `Box::leak` in `new`.
        drop(unsafe { Box::from_raw(self.rec.as_ptr()) });
    }
}

impl<T> Drop for Registered<'_, T> {
    fn drop(&mut self) {
        // Neither consumed (an unwinding or leaked-then-dropped arm): unregister.
        // SAFETY: called once, from `drop`; `self` is not used afterwards.
        drop(unsafe { self.unregister_and_free() });
    }
}

#[cfg(test)]
mod tests {
    use super::{Chan, TrySend};
    use crate::chan::Token;

    /// A `select!` record that is dropped unconsumed leaves its queue (and a send record
    /// gives its value back through `unregister`), so no peer meets a freed record.
    #[test]
    fn registrations_leave_the_queue() {
        let c = Chan::<u32>::new(0);
        let tok = Token::new();
        let r = c.register_recv(&tok, 0).ok().unwrap();
        drop(r);
        assert!(matches!(c.try_send(1), TrySend::Full(1)));
        let s = c.register_send(&tok, 1, 7).ok().unwrap();
        assert_eq!(s.unregister(), Some(7));
        assert!(matches!(c.try_recv(), super::TryRecv::Empty));
        // A queued registration is claimed by a peer; `complete` hands over the value.
        let r = c.register_recv(&tok, 2).ok().unwrap();
        assert!(matches!(c.try_send(5), TrySend::Sent));
        assert_eq!(tok.selected(), Some(2));
        assert_eq!(r.complete(), Some(5));
    }
}
