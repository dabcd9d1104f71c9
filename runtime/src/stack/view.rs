//! [`StackView`]: a coroutine's non-owning view of a [`SlabStack`] (see its comment), and the
//! layout of a scratch buffer at the top of a slot ([`scratch_reserve`]).
//!
//! Slot layout, from the top down: padding and the scratch buffer (only for
//! `spawn_with_buffer`; the pool is asked for that much more), the task's 64-byte `Ext`, then
//! the coroutine's frames, then the guard page. The buffer is above the frames, not among
//! them, so that an idle coroutine's frames and the buffer's first bytes share a page and the
//! rest of the buffer is never touched unless used.
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
    /// The view a coroutine runs on, below the `Ext` area, which lies below the top `reserve`
    /// bytes of the slot (0, or a [`scratch_reserve`]).
    ///
    /// # Safety
    /// The stack must not be freed (or dropped) while a coroutine built on the view can still
    /// run or be dropped.
    pub(crate) unsafe fn view_below(&self, reserve: usize) -> StackView {
        let base = self.ext_addr_below(reserve);
        if reserve % 64 != 0 || reserve > self.usable_size().saturating_sub(super::MIN_STACK) {
            crate::overflow::throw("SlabStack::view_below: reserve leaves too small a stack");
        }
        StackView {
            base: NonZeroUsize::new(base).expect("nonzero"),
            limit: self.limit(),
        }
    }

    /// The address of the `EXT_BYTES` area right below the top `reserve` bytes of the slot.
    #[inline]
    pub(crate) fn ext_addr_below(&self, reserve: usize) -> usize {
        self.ext_addr() - reserve
    }
}

// The `limit` is that of a `SlabStack` (see its impl above) and the `base` is at or below that
// stack's, 64-aligned and at most `usable - MIN_STACK` below it (checked in `view_below`);
// `SlabStack::view_below`'s contract keeps that stack allocated, hence mapped, while a
// coroutine may use the view.
// SAFETY: so the same reasoning as for `SlabStack` holds.
unsafe impl corosensei::stack::Stack for StackView {
    fn base(&self) -> corosensei::stack::StackPointer {
        self.base
    }
    fn limit(&self) -> corosensei::stack::StackPointer {
        self.limit
    }
}

/// Where a scratch buffer's first byte sits within its page (see [`scratch_reserve`]).
pub(crate) const SCRATCH_PAGE_OFFSET: usize = 3072;
/// Largest scratch buffer a coroutine may ask for (its length counts 64-byte lines in a `u16`).
pub(crate) const MAX_SCRATCH: usize = (u16::MAX as usize) * 64;

/// Bytes kept at the top of a stack slot for a scratch buffer of `lines` 64-byte lines
/// (0 for none): the buffer, then padding up to the slot's top that puts the buffer's first
/// byte [`SCRATCH_PAGE_OFFSET`] bytes into a page. The task's `Ext` and the coroutine's
/// frames lie right below the buffer, so they and the buffer's first KiB share one page: a
/// parked reader whose frames take under 3 KiB and that has read at most 1 KiB touches one
/// page of its stack, and the rest of the buffer stays untouched (unbacked) until used.
pub(crate) fn scratch_reserve(lines: u16) -> usize {
    if lines == 0 {
        return 0;
    }
    let page = super::page_size();
    let len = lines as usize * 64;
    // The slot's top is page-aligned, so `top - reserve` lands SCRATCH_PAGE_OFFSET into a page
    // when `reserve` is `page - SCRATCH_PAGE_OFFSET` modulo the page size.
    let pad = (page - SCRATCH_PAGE_OFFSET % page + page - len % page) % page;
    len + pad
}
