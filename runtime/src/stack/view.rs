//! [`StackView`]: a coroutine's non-owning view of a [`SlabStack`] (see its comment).
use std::num::NonZeroUsize;

use corosensei::stack::Stack as _;

use super::SlabStack;

/// A coroutine's view of a [`SlabStack`] (its `base` and `limit`), for a coroutine that does
/// not own the stack: the task keeps the `SlabStack` next to the coroutine and gives it back
/// only once the coroutine has finished (task.rs `Ext`). So finishing a task reads the stack
/// out of 16 bytes written at spawn, instead of moving the whole coroutine (whose words were
/// just written by the switch, which stalled the 16-byte loads of the move).
pub(crate) struct StackView {
    base: NonZeroUsize,
    limit: NonZeroUsize,
}

impl SlabStack {
    /// The view a coroutine runs on.
    ///
    /// # Safety
    /// The stack must not be freed (or dropped) while a coroutine built on the view can still
    /// run or be dropped.
    pub(crate) unsafe fn view(&self) -> StackView {
        StackView {
            base: self.base(),
            limit: self.limit(),
        }
    }
}

// The fields are those of a `SlabStack` (see its impl above), and `SlabStack::view`'s contract
// keeps that stack allocated, hence mapped, while a coroutine may use the view.
// SAFETY: so the same reasoning as for `SlabStack` holds.
unsafe impl corosensei::stack::Stack for StackView {
    fn base(&self) -> corosensei::stack::StackPointer {
        self.base
    }
    fn limit(&self) -> corosensei::stack::StackPointer {
        self.limit
    }
}
