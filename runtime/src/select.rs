//! `select!` (Go's `select` statement): waits on several channel operations and runs the arm
//! of the one that completes.
//!
//! Algorithm (Go's `selectgo`, without locking every channel at once):
//! 1. Visit the arms in a uniformly random order (xorshift per thread) and try each without
//!    blocking; the first that completes wins. The first ready arm of a uniform permutation
//!    is uniform among the ready arms, so the choice is fair as Go's. A closed channel makes
//!    its arm ready (receive: `Err(RecvError)`, send: `Err(SendError(v))`).
//! 2. With a `default` arm, stop there. Otherwise register one waiter record per arm, all
//!    sharing one fresh [`Token`](crate::chan) (Go's `selectDone`). Registering re-checks
//!    readiness under that channel's lock; if an arm became ready meanwhile, abort the token
//!    (CAS) and start over, unless a peer already selected it.
//! 3. Park until a peer selects the token through one record and finishes its transfer; then
//!    remove the other records and hand the result to the arm.
//!
//! Because selection is one CAS on the token, two selects racing for one sender can never
//! both take its value, and an aborted registration never loses one (the value stays in the
//! record until the owner takes it back). Differences from Go: send arms on closed channels
//! report an error instead of panicking; at most 32 arms.
use std::cell::Cell;
use std::sync::Arc;

use crate::chan::{Receiver, RecvError, Registered, SendError, Sender, Token, TryRecv, TrySend};
use crate::park;
use crate::task::WaitReason;

/// Opaque registration handle passed to [`SelectArm::register`].
#[doc(hidden)]
pub struct Registration(Arc<Token>);

/// One arm of a `select!` (implementation detail of the macro).
#[doc(hidden)]
pub trait SelectArm {
    /// Tries to complete without blocking.
    fn try_now(&mut self) -> bool;
    /// Enqueues a waiter record; returns true (and enqueues nothing) if the arm is ready now.
    fn register(&mut self, reg: &Registration, arm: usize) -> bool;
    /// Removes the record (the arm was not selected).
    fn unregister(&mut self);
    /// The token was selected through this arm: collect the result.
    fn complete(&mut self);
}

/// Something a receive arm can receive from (`Receiver<T>` or a reference to one).
#[doc(hidden)]
pub trait RecvSource<T> {
    /// The receiver.
    fn receiver(&self) -> &Receiver<T>;
}
impl<T> RecvSource<T> for Receiver<T> {
    fn receiver(&self) -> &Receiver<T> {
        self
    }
}
impl<T, R: RecvSource<T> + ?Sized> RecvSource<T> for &R {
    fn receiver(&self) -> &Receiver<T> {
        (**self).receiver()
    }
}

/// Something a send arm can send on (`Sender<T>` or a reference to one).
#[doc(hidden)]
pub trait SendSource<T> {
    /// The sender.
    fn sender(&self) -> &Sender<T>;
}
impl<T> SendSource<T> for Sender<T> {
    fn sender(&self) -> &Sender<T> {
        self
    }
}
impl<T, S: SendSource<T> + ?Sized> SendSource<T> for &S {
    fn sender(&self) -> &Sender<T> {
        (**self).sender()
    }
}

/// A receive arm.
#[doc(hidden)]
pub struct RecvArm<'a, T> {
    rx: &'a Receiver<T>,
    rec: Option<Registered<'a, T>>,
    out: Option<Result<T, RecvError>>,
}

impl<'a, T> RecvArm<'a, T> {
    /// Arm receiving from `src`.
    pub fn new<R: RecvSource<T> + ?Sized>(src: &'a R) -> Self {
        RecvArm {
            rx: src.receiver(),
            rec: None,
            out: None,
        }
    }
    /// The result, if this arm was selected.
    pub fn take(&mut self) -> Option<Result<T, RecvError>> {
        self.out.take()
    }
}

impl<'a, T> SelectArm for RecvArm<'a, T> {
    fn try_now(&mut self) -> bool {
        match self.rx.chan.try_recv() {
            TryRecv::Value(v) => self.out = Some(Ok(v)),
            TryRecv::Closed => self.out = Some(Err(RecvError)),
            TryRecv::Empty => return false,
        }
        true
    }
    fn register(&mut self, reg: &Registration, arm: usize) -> bool {
        match self.rx.chan.register_recv(&reg.0, arm) {
            Ok(w) => {
                self.rec = Some(w);
                false
            }
            Err(()) => true,
        }
    }
    fn unregister(&mut self) {
        if let Some(w) = self.rec.take() {
            w.unregister();
        }
    }
    fn complete(&mut self) {
        if let Some(w) = self.rec.take() {
            self.out = Some(w.complete().ok_or(RecvError));
        }
    }
}

/// A send arm.
#[doc(hidden)]
pub struct SendArm<'a, T> {
    tx: &'a Sender<T>,
    val: Option<T>,
    rec: Option<Registered<'a, T>>,
    out: Option<Result<(), SendError<T>>>,
}

impl<'a, T> SendArm<'a, T> {
    /// Arm sending `v` on `dst`.
    pub fn new<S: SendSource<T> + ?Sized>(dst: &'a S, v: T) -> Self {
        SendArm {
            tx: dst.sender(),
            val: Some(v),
            rec: None,
            out: None,
        }
    }
    /// The result, if this arm was selected.
    pub fn take(&mut self) -> Option<Result<(), SendError<T>>> {
        self.out.take()
    }
}

impl<'a, T> SelectArm for SendArm<'a, T> {
    fn try_now(&mut self) -> bool {
        let Some(v) = self.val.take() else {
            return false;
        };
        match self.tx.chan.try_send(v) {
            TrySend::Sent => self.out = Some(Ok(())),
            TrySend::Closed(v) => self.out = Some(Err(SendError(v))),
            TrySend::Full(v) => {
                self.val = Some(v);
                return false;
            }
        }
        true
    }
    fn register(&mut self, reg: &Registration, arm: usize) -> bool {
        let Some(v) = self.val.take() else {
            return false;
        };
        match self.tx.chan.register_send(&reg.0, arm, v) {
            Ok(w) => {
                self.rec = Some(w);
                false
            }
            Err(v) => {
                self.val = Some(v);
                true
            }
        }
    }
    fn unregister(&mut self) {
        if let Some(w) = self.rec.take() {
            self.val = w.unregister();
        }
    }
    fn complete(&mut self) {
        if let Some(w) = self.rec.take() {
            self.out = Some(match w.complete() {
                None => Ok(()),
                Some(v) => Err(SendError(v)),
            });
        }
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let x = Cell::new(0u8);
        let seed = (&x as *const Cell<u8> as u64) ^ crate::timer::nanotime().rotate_left(29);
        seed | 1
    });
}

/// xorshift64*: cheap per-thread randomness for arm order.
pub(crate) fn fastrand() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Runs a select over `arms`; returns false only when `nonblocking` and nothing was ready.
#[doc(hidden)]
pub fn __select(arms: &mut [&mut dyn SelectArm], nonblocking: bool) -> bool {
    let n = arms.len();
    assert!(n <= 32, "select!: at most 32 arms");
    let mut order = [0usize; 32];
    for (i, o) in order.iter_mut().enumerate().take(n) {
        *o = i;
    }
    loop {
        for i in (1..n).rev() {
            let j = (fastrand() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &i in &order[..n] {
            if arms[i].try_now() {
                return true;
            }
        }
        if nonblocking {
            return false;
        }
        if n == 0 {
            loop {
                park::park_reason(WaitReason::Chan);
            }
        }
        let tok = Token::new();
        let reg = Registration(tok.clone());
        let mut registered = 0;
        let mut ready = false;
        for &i in &order[..n] {
            if arms[i].register(&reg, i) {
                ready = true;
                break;
            }
            registered += 1;
        }
        if ready && tok.try_abort() {
            for &i in &order[..registered] {
                arms[i].unregister();
            }
            continue;
        }
        tok.wait(None);
        let sel = tok.selected().expect("select: woken without selection");
        for &i in &order[..registered] {
            if i != sel {
                arms[i].unregister();
            }
        }
        arms[sel].complete();
        return true;
    }
}

/// Waits on several channel operations, like Go's `select`.
///
/// ```ignore
/// gort::select! {
///     recv(rx) -> v => println!("got {v:?}"),          // v: Result<T, RecvError>
///     send(tx, 42) -> res => res.unwrap(),             // res: Result<(), SendError<T>>
///     recv(gort::time::after(Duration::from_secs(1))) -> _ => println!("timeout"),
///     default => println!("nothing ready"),            // optional: never blocks
/// }
/// ```
/// Channel expressions and send values are evaluated once, before selecting. When several
/// arms are ready, one is picked uniformly at random. An arm on a closed channel is ready.
#[macro_export]
macro_rules! select {
    (@parse $arms:tt $ids:tt ()) => {
        $crate::select!(@expand $arms false { ::core::unreachable!("select!: nothing selected") })
    };
    (@parse $arms:tt $ids:tt ($d:tt)) => { $crate::select!(@expand $arms true $d) };
    (@parse $arms:tt $ids:tt () default => $b:block , $($rest:tt)*) => {
        $crate::select!(@parse $arms $ids ($b) $($rest)*)
    };
    (@parse $arms:tt $ids:tt () default => $b:block $($rest:tt)*) => {
        $crate::select!(@parse $arms $ids ($b) $($rest)*)
    };
    (@parse $arms:tt $ids:tt () default => $b:expr , $($rest:tt)*) => {
        $crate::select!(@parse $arms $ids ({ $b }) $($rest)*)
    };
    (@parse $arms:tt $ids:tt () default => $b:expr) => {
        $crate::select!(@parse $arms $ids ({ $b }))
    };
    (@parse $arms:tt $ids:tt $d:tt recv($r:expr) -> $p:pat => $b:block , $($rest:tt)*) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::RecvArm::new, $r,) $p => $b; $($rest)*)
    };
    (@parse $arms:tt $ids:tt $d:tt recv($r:expr) -> $p:pat => $b:block $($rest:tt)*) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::RecvArm::new, $r,) $p => $b; $($rest)*)
    };
    (@parse $arms:tt $ids:tt $d:tt recv($r:expr) -> $p:pat => $b:expr , $($rest:tt)*) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::RecvArm::new, $r,) $p => { $b }; $($rest)*)
    };
    (@parse $arms:tt $ids:tt $d:tt recv($r:expr) -> $p:pat => $b:expr) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::RecvArm::new, $r,) $p => { $b };)
    };
    (@parse $arms:tt $ids:tt $d:tt send($s:expr, $v:expr) -> $p:pat => $b:block , $($rest:tt)*) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::SendArm::new, $s, $v) $p => $b; $($rest)*)
    };
    (@parse $arms:tt $ids:tt $d:tt send($s:expr, $v:expr) -> $p:pat => $b:block $($rest:tt)*) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::SendArm::new, $s, $v) $p => $b; $($rest)*)
    };
    (@parse $arms:tt $ids:tt $d:tt send($s:expr, $v:expr) -> $p:pat => $b:expr , $($rest:tt)*) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::SendArm::new, $s, $v) $p => { $b }; $($rest)*)
    };
    (@parse $arms:tt $ids:tt $d:tt send($s:expr, $v:expr) -> $p:pat => $b:expr) => {
        $crate::select!(@arm $arms $ids $d ($crate::select::SendArm::new, $s, $v) $p => { $b };)
    };
    (@arm [$($arms:tt)*] [$id:ident $($ids:ident)*] $d:tt $ctor:tt $p:pat => $b:tt; $($rest:tt)*) => {
        $crate::select!(@parse [$($arms)* ($id $ctor $p => $b)] [$($ids)*] $d $($rest)*)
    };
    (@expand [$( ($id:ident ($ctor:path, $src:expr, $($v:expr)?) $p:pat => $b:tt) )*] $nb:tt $d:tt) => {{
        $(
            let $id = &$src;
            #[allow(unused_mut)]
            let mut $id = $ctor($id $(, $v)?);
        )*
        $crate::select::__select(&mut [$( &mut $id as &mut dyn $crate::select::SelectArm ),*], $nb);
        $( if let ::core::option::Option::Some(__res) = $id.take() {
            match __res { $p => $b }
        } else )* $d
    }};
    ($($t:tt)*) => {
        $crate::select!(@parse [] [
            __a0 __a1 __a2 __a3 __a4 __a5 __a6 __a7 __a8 __a9 __a10 __a11 __a12 __a13 __a14 __a15
            __a16 __a17 __a18 __a19 __a20 __a21 __a22 __a23 __a24 __a25 __a26 __a27 __a28 __a29
            __a30 __a31
        ] () $($t)*)
    };
}
