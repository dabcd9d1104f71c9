//! Channels (Go's `chan T`): [`bounded`] (`n == 0` is an unbuffered rendezvous) and
//! [`unbounded`], with cloneable multi-producer multi-consumer [`Sender`]/[`Receiver`].
//!
//! Blocking operations park the calling coroutine (or block a plain thread) through
//! [`crate::park`], so coroutines and threads can share channels in any mix. See `core.rs`
//! for the waiter/token protocol and [`crate::select!`] for selecting over several channels.
//!
//! Closing follows Go: [`Sender::close`] makes receivers drain what is buffered and then see
//! "closed"; iterating a receiver (`for v in &rx`) ends at close. Differences from Go:
//! * a send on a closed channel returns an error carrying the value back instead of
//!   panicking, and closing twice returns `false` instead of panicking;
//! * the Rust convention also applies: dropping the last `Sender` closes the channel, and
//!   dropping the last `Receiver` closes it and drops buffered values (senders then fail);
//! * `cap()` is `None` for unbounded channels.
mod core;
mod lock;
mod waiter;
mod waitq;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use self::core::{Chan, Registered, TryRecv, TrySend};
pub(crate) use self::waiter::Token;

/// A channel of capacity `cap`; `cap == 0` is unbuffered: a send completes only when a
/// receiver has taken the value (Go's `make(chan T, cap)`).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let c = Arc::new(Chan::new(cap));
    (Sender { chan: c.clone() }, Receiver { chan: c })
}

/// A channel whose sends never block.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    bounded(usize::MAX)
}

/// The sending half; clone it for more producers.
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

/// The receiving half; clone it for more consumers (each value goes to one receiver).
pub struct Receiver<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

fn deadline_of(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl<T> Sender<T> {
    /// Sends, parking while the channel is full (or, unbuffered, until a receiver takes the
    /// value). Fails, returning the value, if the channel is closed.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        match self.chan.send(v, None) {
            TrySend::Sent => Ok(()),
            TrySend::Closed(v) | TrySend::Full(v) => Err(SendError(v)),
        }
    }

    /// Sends without blocking.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        match self.chan.try_send(v) {
            TrySend::Sent => Ok(()),
            TrySend::Closed(v) => Err(TrySendError::Closed(v)),
            TrySend::Full(v) => Err(TrySendError::Full(v)),
        }
    }

    /// Sends, waiting at most `d`.
    pub fn send_timeout(&self, v: T, d: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(v, deadline_of(d))
    }

    /// Sends, waiting at most until `deadline`.
    pub fn send_deadline(&self, v: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        match self.chan.send(v, Some(deadline)) {
            TrySend::Sent => Ok(()),
            TrySend::Closed(v) => Err(SendTimeoutError::Closed(v)),
            TrySend::Full(v) => Err(SendTimeoutError::Timeout(v)),
        }
    }

    /// Closes the channel (Go's `close(ch)`): blocked senders fail, receivers drain the
    /// buffer and then see closed. Returns false if it was already closed.
    pub fn close(&self) -> bool {
        self.chan.close()
    }

    /// True once closed (explicitly or because every receiver is gone).
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Buffered values (Go's `len(ch)`).
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity (Go's `cap(ch)`); `None` for unbounded channels.
    pub fn cap(&self) -> Option<usize> {
        Some(self.chan.cap()).filter(|&c| c != usize::MAX)
    }

    /// True if both are halves of the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Receiver<T> {
    /// Receives, parking until a value arrives; fails once the channel is closed and drained.
    pub fn recv(&self) -> Result<T, RecvError> {
        match self.chan.recv(None) {
            TryRecv::Value(v) => Ok(v),
            TryRecv::Closed | TryRecv::Empty => Err(RecvError),
        }
    }

    /// Receives without blocking.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.chan.try_recv() {
            TryRecv::Value(v) => Ok(v),
            TryRecv::Closed => Err(TryRecvError::Closed),
            TryRecv::Empty => Err(TryRecvError::Empty),
        }
    }

    /// Receives, waiting at most `d`.
    pub fn recv_timeout(&self, d: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(deadline_of(d))
    }

    /// Receives, waiting at most until `deadline`.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        match self.chan.recv(Some(deadline)) {
            TryRecv::Value(v) => Ok(v),
            TryRecv::Closed => Err(RecvTimeoutError::Closed),
            TryRecv::Empty => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Blocking iterator that ends when the channel is closed and drained (`for v := range ch`).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// Iterator over the values available now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// True once closed (values may still be buffered).
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Buffered values.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity; `None` for unbounded channels.
    pub fn cap(&self) -> Option<usize> {
        Some(self.chan.cap()).filter(|&c| c != usize::MAX)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new handle is made from a live one (as `Arc::clone`).
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        // Relaxed: as in `Sender::clone`.
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last decrement must see every other handle's decrement.
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.close();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // AcqRel: as in `Sender::drop`.
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.disconnect_receivers();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receiver { .. }")
    }
}

/// Blocking iterator of a [`Receiver`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator of a [`Receiver`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator of a [`Receiver`].
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

/// A send failed because the channel is closed; carries the value back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// Why a `try_send` failed; carries the value back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The buffer is full (or, unbuffered, no receiver is waiting).
    Full(T),
    /// The channel is closed.
    Closed(T),
}

/// Why a `send_timeout` failed; carries the value back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The deadline passed.
    Timeout(T),
    /// The channel is closed.
    Closed(T),
}

/// The channel is closed and drained.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RecvError;

/// Why a `try_recv` failed.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// Nothing is available now.
    Empty,
    /// The channel is closed and drained.
    Closed,
}

/// Why a `recv_timeout` failed.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvTimeoutError {
    /// The deadline passed.
    Timeout,
    /// The channel is closed and drained.
    Closed,
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Closed(v) => v,
        }
    }
}

macro_rules! error_impls {
    ($($ty:ty, $name:literal, |$s:ident| $msg:expr;)*) => {$(
        impl<T> fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $s = self;
                write!(f, "{}({})", $name, $msg)
            }
        }
        impl<T> fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $s = self;
                f.write_str($msg)
            }
        }
        impl<T> std::error::Error for $ty {}
    )*};
}

error_impls! {
    SendError<T>, "SendError", |_s| "sending on a closed channel";
    TrySendError<T>, "TrySendError", |s| match s {
        TrySendError::Full(_) => "sending on a full channel",
        TrySendError::Closed(_) => "sending on a closed channel",
    };
    SendTimeoutError<T>, "SendTimeoutError", |s| match s {
        SendTimeoutError::Timeout(_) => "timed out sending on a channel",
        SendTimeoutError::Closed(_) => "sending on a closed channel",
    };
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on a closed channel")
    }
}
impl std::error::Error for RecvError {}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "receiving on an empty channel",
            TryRecvError::Closed => "receiving on a closed channel",
        })
    }
}
impl std::error::Error for TryRecvError {}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "timed out receiving on a channel",
            RecvTimeoutError::Closed => "receiving on a closed channel",
        })
    }
}
impl std::error::Error for RecvTimeoutError {}
