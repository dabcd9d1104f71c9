//! Cancellation contexts (Go's `context` package): [`background`], [`with_cancel`],
//! [`with_deadline`], [`with_timeout`], [`with_value`] and [`after_func`].
//!
//! A [`Context`] is an `Arc`'d node with a parent pointer. Cancelable nodes own a channel
//! that is closed on cancellation, so `ctx.done()` works as a `select!` arm (a receive on it
//! returns `Err(RecvError)` once cancelled), plus a small `std` mutex (never held across a
//! park or a user callback) with the error and the registered children. Cancelling a node
//! records the error, closes its channel, cancels its children with the same error, and
//! unlinks it from its parent. Deadlines are runtime timers whose callback cancels the node
//! with [`ContextError::DeadlineExceeded`]; a child's deadline is never later than its
//! parent's.
//!
//! Differences from Go: the cancel function is a [`CancelFunc`] value and dropping it does
//! *not* cancel (Go's `defer cancel()` becomes an explicit `cancel.cancel()`; until then a
//! child stays registered in its parent, as in Go). `with_value` keys are any
//! `'static + PartialEq` type; lookups downcast. [`after_func`] runs `f` on its own
//! coroutine, which waits on `done()` (Go runs it in a new goroutine too).
use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::chan::{bounded, Receiver, Sender};
use crate::timer::{add_timer, TimerHandle};

/// Why a context is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// Cancelled through a [`CancelFunc`] (Go's `context.Canceled`).
    Canceled,
    /// Its deadline passed (Go's `context.DeadlineExceeded`).
    DeadlineExceeded,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextError::Canceled => "context canceled",
            ContextError::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl std::error::Error for ContextError {}

struct CancelState {
    err: Option<ContextError>,
    children: Vec<(u64, Arc<Node>)>,
    timer: Option<TimerHandle>,
}

struct CancelPart {
    id: u64,
    tx: Sender<()>,
    rx: Receiver<()>,
    st: Mutex<CancelState>,
}

type AnyBox = Box<dyn Any + Send + Sync>;

struct Node {
    parent: Option<Context>,
    deadline: Option<Instant>,
    cancel: Option<CancelPart>,
    value: Option<(AnyBox, AnyBox)>,
}

/// A cancellation scope carrying a deadline and values (Go's `context.Context`). Cheap to
/// clone; clones are the same context.
#[derive(Clone)]
pub struct Context {
    node: Arc<Node>,
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A context that is never cancelled and has no deadline or values (Go's
/// `context.Background()`).
pub fn background() -> Context {
    static BG: OnceLock<Context> = OnceLock::new();
    BG.get_or_init(|| Context {
        node: Arc::new(Node {
            parent: None,
            deadline: None,
            cancel: None,
            value: None,
        }),
    })
    .clone()
}

fn never() -> Receiver<()> {
    static NEVER: OnceLock<(Sender<()>, Receiver<()>)> = OnceLock::new();
    NEVER.get_or_init(|| bounded(0)).1.clone()
}

impl Context {
    fn cancel_part(&self) -> Option<(&Arc<Node>, &CancelPart)> {
        let mut n = &self.node;
        loop {
            if let Some(c) = &n.cancel {
                return Some((n, c));
            }
            n = &n.parent.as_ref()?.node;
        }
    }

    /// A receiver that becomes ready (closed: `recv` returns `Err`) when the context is done.
    /// For a never-cancelled context it never becomes ready.
    pub fn done(&self) -> Receiver<()> {
        match self.cancel_part() {
            Some((_, c)) => c.rx.clone(),
            None => never(),
        }
    }

    /// `None` while not done; then why (Go's `ctx.Err()`).
    pub fn err(&self) -> Option<ContextError> {
        self.cancel_part().and_then(|(_, c)| lock(&c.st).err)
    }

    /// True once done.
    pub fn is_done(&self) -> bool {
        self.err().is_some()
    }

    /// The deadline, if any (Go's `ctx.Deadline()`).
    pub fn deadline(&self) -> Option<Instant> {
        self.node.deadline
    }

    /// The value stored under `key` by this context or its nearest ancestor, if its type is `V`.
    pub fn value<K: PartialEq + 'static, V: 'static>(&self, key: &K) -> Option<&V> {
        let mut n = &self.node;
        loop {
            if let Some((k, v)) = &n.value {
                if k.downcast_ref::<K>() == Some(key) {
                    return v.downcast_ref::<V>();
                }
            }
            n = &n.parent.as_ref()?.node;
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("deadline", &self.deadline())
            .field("err", &self.err())
            .finish()
    }
}

fn cancel_node(node: &Arc<Node>, err: ContextError) {
    let Some(c) = &node.cancel else { return };
    let (children, timer) = {
        let mut st = lock(&c.st);
        if st.err.is_some() {
            return;
        }
        st.err = Some(err);
        (std::mem::take(&mut st.children), st.timer.take())
    };
    if let Some(t) = timer {
        t.cancel();
    }
    c.tx.close();
    for (_, ch) in children {
        cancel_node(&ch, err);
    }
    // Unlink from the nearest cancelable ancestor.
    if let Some(p) = &node.parent {
        if let Some((_, pc)) = p.cancel_part() {
            lock(&pc.st).children.retain(|(id, _)| *id != c.id);
        }
    }
}

/// Cancels its context (and the context's children). Cloneable; dropping it does not cancel.
#[derive(Clone)]
pub struct CancelFunc {
    node: Arc<Node>,
}

impl CancelFunc {
    /// Cancels with [`ContextError::Canceled`]; later calls do nothing.
    pub fn cancel(&self) {
        cancel_node(&self.node, ContextError::Canceled);
    }
}

impl fmt::Debug for CancelFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CancelFunc { .. }")
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_cancelable(parent: &Context, deadline: Option<Instant>) -> (Context, CancelFunc) {
    let (tx, rx) = bounded(0);
    let node = Arc::new(Node {
        parent: Some(parent.clone()),
        deadline,
        cancel: Some(CancelPart {
            // Relaxed: only uniqueness matters.
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            rx,
            st: Mutex::new(CancelState {
                err: None,
                children: Vec::new(),
                timer: None,
            }),
        }),
        value: None,
    });
    if let Some((_, pc)) = parent.cancel_part() {
        let mut st = lock(&pc.st);
        match st.err {
            Some(e) => {
                drop(st);
                cancel_node(&node, e);
            }
            None => {
                let id = node.cancel.as_ref().map_or(0, |c| c.id);
                st.children.push((id, node.clone()));
            }
        }
    }
    (Context { node: node.clone() }, CancelFunc { node })
}

/// A child context cancelled by the returned [`CancelFunc`] or when `parent` is done.
pub fn with_cancel(parent: &Context) -> (Context, CancelFunc) {
    new_cancelable(parent, parent.deadline())
}

/// A child context that is also cancelled, with [`ContextError::DeadlineExceeded`], at
/// `deadline` (or the parent's deadline if that is earlier).
pub fn with_deadline(parent: &Context, deadline: Instant) -> (Context, CancelFunc) {
    if parent.deadline().is_some_and(|p| p <= deadline) {
        return with_cancel(parent);
    }
    let (ctx, cancel) = new_cancelable(parent, Some(deadline));
    if Instant::now() >= deadline {
        cancel_node(&ctx.node, ContextError::DeadlineExceeded);
        return (ctx, cancel);
    }
    let weak: Weak<Node> = Arc::downgrade(&ctx.node);
    let h = add_timer(deadline + Duration::from_nanos(1), move || {
        if let Some(n) = weak.upgrade() {
            cancel_node(&n, ContextError::DeadlineExceeded);
        }
    });
    if let Some(c) = &ctx.node.cancel {
        let mut st = lock(&c.st);
        if st.err.is_none() {
            st.timer = Some(h);
        } else {
            h.cancel();
        }
    }
    (ctx, cancel)
}

/// [`with_deadline`] at `timeout` from now.
pub fn with_timeout(parent: &Context, timeout: Duration) -> (Context, CancelFunc) {
    let now = Instant::now();
    with_deadline(
        parent,
        now.checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600)),
    )
}

/// A child context carrying `value` under `key` (Go's `context.WithValue`).
pub fn with_value<K, V>(parent: &Context, key: K, value: V) -> Context
where
    K: PartialEq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    Context {
        node: Arc::new(Node {
            parent: Some(parent.clone()),
            deadline: parent.deadline(),
            cancel: None,
            value: Some((Box::new(key), Box::new(value))),
        }),
    }
}

const AF_PENDING: u8 = 0;
const AF_STOPPED: u8 = 1;
const AF_RAN: u8 = 2;

/// Stops an [`after_func`] registration.
#[derive(Debug)]
pub struct AfterFuncStop {
    state: Arc<AtomicU8>,
    stop_tx: Option<Sender<()>>,
}

impl AfterFuncStop {
    /// Prevents `f` from running; true if it had not started (Go's `stop()`).
    pub fn stop(&self) -> bool {
        let ok = self
            .state
            .compare_exchange(AF_PENDING, AF_STOPPED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if let Some(tx) = &self.stop_tx {
            tx.close();
        }
        ok
    }
}

/// Runs `f` on a new coroutine once `ctx` is done, unless stopped first (Go 1.21's
/// `context.AfterFunc`). For a context that can never be cancelled nothing is spawned.
pub fn after_func(ctx: &Context, f: impl FnOnce() + Send + 'static) -> AfterFuncStop {
    let state = Arc::new(AtomicU8::new(AF_PENDING));
    if ctx.cancel_part().is_none() {
        return AfterFuncStop {
            state,
            stop_tx: None,
        };
    }
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let done = ctx.done();
    let st = state.clone();
    crate::spawn(move || {
        crate::select! {
            recv(done) -> _ => {
                if st.compare_exchange(AF_PENDING, AF_RAN, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    f();
                }
            },
            recv(stop_rx) -> _ => {},
        }
    });
    AfterFuncStop {
        state,
        stop_tx: Some(stop_tx),
    }
}
