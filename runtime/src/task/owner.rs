//! [`Owner`]: a task's owning worker in two bytes (see task.rs for why the header is small).
use std::sync::atomic::{AtomicU16, Ordering};

use crate::overflow;

/// Worker index meaning "never ran yet": such a task may be stolen.
pub(crate) const NO_OWNER: usize = usize::MAX;

/// Most workers a runtime may have: worker indices fit an [`Owner`]'s `u16` (`u16::MAX` is
/// [`NO_OWNER`]).
pub(crate) const MAX_WORKERS: usize = u16::MAX as usize;

/// A worker index (or [`NO_OWNER`]) in 2 bytes: a million live tasks are 6 MB smaller than
/// with an `AtomicUsize`. Read and written as `usize`, with the orderings of `AtomicU16`.
pub(crate) struct Owner(AtomicU16);

impl Owner {
    /// No owner yet ([`NO_OWNER`]).
    pub(crate) const fn new() -> Owner {
        Owner(AtomicU16::new(u16::MAX))
    }

    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> usize {
        match self.0.load(order) {
            u16::MAX => NO_OWNER,
            i => i as usize,
        }
    }

    pub(crate) fn store(&self, index: usize, order: Ordering) {
        match u16::try_from(index) {
            Ok(i) if i != u16::MAX => self.0.store(i, order),
            _ => overflow::throw("Owner::store: worker index out of range"),
        }
    }
}
