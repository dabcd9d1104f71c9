//! FIFO of blocked channel operations (Go's `waitq` of sudogs) that keeps its first record
//! inline.
//!
//! Most channels have at most one blocked peer at a time: a coroutine parked in `recv` on its
//! own channel, or the two sides of a ping-pong. Storing the first record inline means such a
//! channel never allocates a queue (a `VecDeque` would allocate on its first push and keep the
//! buffer). A second waiter moves the queue into a boxed `VecDeque`, kept for the channel's
//! life. Go links sudogs into an intrusive list instead; an inline head gives the same "no
//! allocation for one waiter" without unsafe links.
//!
//! Invariant: `first` is `None` only when the whole queue is empty; `first` is the front.
use std::collections::VecDeque;

pub(crate) struct WaitQueue<W> {
    first: Option<W>,
    /// Boxed on purpose: 8 bytes inline instead of a `VecDeque`'s 32, and most channels
    /// never make it.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<W>>>,
}

impl<W> Default for WaitQueue<W> {
    fn default() -> Self {
        WaitQueue {
            first: None,
            rest: None,
        }
    }
}

impl<W> WaitQueue<W> {
    #[inline]
    pub(crate) fn push_back(&mut self, w: W) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.get_or_insert_with(Default::default).push_back(w);
        }
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<W> {
        let f = self.first.take()?;
        self.first = self.rest.as_mut().and_then(|r| r.pop_front());
        Some(f)
    }

    /// Keeps the records for which `keep` returns true, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&W) -> bool) {
        if let Some(r) = self.rest.as_mut() {
            r.retain(&mut keep);
        }
        if self.first.as_ref().is_some_and(|w| !keep(w)) {
            self.first = self.rest.as_mut().and_then(|r| r.pop_front());
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &W> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// Empties the queue, yielding the records front to back.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = W> {
        let first = self.first.take();
        let rest = self.rest.as_mut().map(|r| std::mem::take(&mut **r));
        first.into_iter().chain(rest.into_iter().flatten())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.iter().count()
    }
}

#[cfg(test)]
mod tests {
    use super::WaitQueue;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8),
        Pop,
        Retain(u8),
        TakeAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u8>().prop_map(Op::Push),
            2 => Just(Op::Pop),
            1 => any::<u8>().prop_map(Op::Retain),
            1 => Just(Op::TakeAll),
        ]
    }

    proptest! {
        /// The queue behaves like a `VecDeque` (the model) under any sequence of operations.
        #[test]
        fn matches_vecdeque(ops in proptest::collection::vec(op(), 0..200)) {
            let mut q = WaitQueue::default();
            let mut m = VecDeque::new();
            for o in ops {
                match o {
                    Op::Push(v) => { q.push_back(v); m.push_back(v); }
                    Op::Pop => prop_assert_eq!(q.pop_front(), m.pop_front()),
                    // Drop values that share the residue, as `unregister` drops one record.
                    Op::Retain(k) => {
                        q.retain(|v| v % 7 != k % 7);
                        m.retain(|v| v % 7 != k % 7);
                    }
                    Op::TakeAll => {
                        let got: Vec<_> = q.take_all().collect();
                        let want: Vec<_> = m.drain(..).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(q.len(), m.len());
                prop_assert!(q.iter().eq(m.iter()));
                prop_assert_eq!(q.first.is_none(), m.is_empty());
            }
        }
    }
}
