//! [`Ref`], the counted reference to a value in a pool cell (see the parent module).
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

use super::{Cell, Pooled};

/// A counted reference to a `T` in a pool cell (like `Arc<T>`, see the module comment).
pub(crate) struct Ref<T: Pooled> {
    cell: NonNull<Cell<T>>,
    _own: PhantomData<T>,
}

// As `Arc<T>`: sending or sharing a `Ref` shares the `T` and may drop it on another thread.
// SAFETY: `T: Send + Sync` (required by `Pooled`).
unsafe impl<T: Pooled> Send for Ref<T> {}
// SAFETY: as above.
unsafe impl<T: Pooled> Sync for Ref<T> {}

impl<T: Pooled> Ref<T> {
    /// # Safety
    /// `cell` is live with one count that the new `Ref` takes over.
    pub(super) unsafe fn from_cell(cell: *mut Cell<T>) -> Ref<T> {
        Ref {
            // SAFETY: cells come from non-null chunks.
            cell: unsafe { NonNull::new_unchecked(cell) },
            _own: PhantomData,
        }
    }

    fn cell(&self) -> &Cell<T> {
        // SAFETY: a `Ref` keeps its cell live (count >= 1), and chunks are never unmapped.
        unsafe { self.cell.as_ref() }
    }

    /// The value's address (as `Arc::as_ptr`).
    pub(crate) fn as_ptr(this: &Ref<T>) -> *const T {
        this.cell().value.as_ptr()
    }

    /// Gives up the `Ref` without dropping its count (as `Arc::into_raw`).
    pub(crate) fn into_raw(this: Ref<T>) -> *const T {
        let p = Ref::as_ptr(&this);
        std::mem::forget(this);
        p
    }

    /// Takes back a count given up by [`Ref::into_raw`] (as `Arc::from_raw`), or one of the
    /// extra counts of `Cache::alloc_with`.
    ///
    /// # Safety
    /// `p` came from `Ref::<T>::into_raw` (or `as_ptr` of a cell whose extra count the caller
    /// owns) and that count is taken back once.
    pub(crate) unsafe fn from_raw(p: *const T) -> Ref<T> {
        let off = std::mem::offset_of!(Cell<T>, value);
        // SAFETY: caller contract: `p` is the value field of a live cell.
        unsafe { Ref::from_cell(p.byte_sub(off).cast_mut().cast::<Cell<T>>()) }
    }

    /// A new `Ref` to the value at `p` (as `Arc::increment_strong_count` + `from_raw`).
    ///
    /// # Safety
    /// `p` is the address of a value in a live cell (for instance from [`Ref::as_ptr`] of a
    /// `Ref` that is kept alive during this call).
    pub(crate) unsafe fn clone_raw(p: *const T) -> Ref<T> {
        // SAFETY: caller contract.
        let r = std::mem::ManuallyDrop::new(unsafe { Ref::from_raw(p) });
        (*r).clone()
    }

    /// True if both point to the same value.
    pub(crate) fn ptr_eq(a: &Ref<T>, b: &Ref<T>) -> bool {
        a.cell == b.cell
    }

    /// The number of `Ref`s (a snapshot, as `Arc::strong_count`).
    #[cfg(test)]
    pub(crate) fn strong_count(this: &Ref<T>) -> usize {
        // Acquire: as `Arc::strong_count` (pairs with the Release decrement in `drop`), so a
        // caller that sees 1 also sees what the other owners did before they let go.
        this.cell().refs.load(Ordering::Acquire)
    }

    /// Mutable access if this is the only `Ref` (as `Arc::get_mut`).
    #[cfg(test)]
    pub(crate) fn get_mut(this: &mut Ref<T>) -> Option<&mut T> {
        if Ref::strong_count(this) != 1 {
            return None;
        }
        // SAFETY: we hold the only count and `&mut` to it, so nobody else can reach the value
        // (no weak references exist); the Acquire load above ordered the other owners' uses
        // before ours.
        Some(unsafe { (*this.cell.as_ptr()).value.assume_init_mut() })
    }
}

impl<T: Pooled> std::ops::Deref for Ref<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a live cell's value is initialised (module invariant).
        unsafe { self.cell().value.assume_init_ref() }
    }
}

impl<T: Pooled> Clone for Ref<T> {
    fn clone(&self) -> Ref<T> {
        // Relaxed: as `Arc::clone`: the caller already holds a count, so the cell cannot be
        // freed meanwhile, and the new count publishes nothing (pairs with nothing).
        let old = self.cell().refs.fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            crate::overflow::throw("Ref::clone: reference count overflow");
        }
        Ref {
            cell: self.cell,
            _own: PhantomData,
        }
    }
}

impl<T: Pooled> Drop for Ref<T> {
    fn drop(&mut self) {
        // Release: our uses of the value happen before the last owner drops it (pairs with
        // the Acquire fence below, in whichever thread drops the last count).
        if self.cell().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let cell = self.cell.as_ptr();
        // SAFETY: we dropped the last count: nobody else references the cell, its value is
        // initialised and dropped once here; then the free cell goes back to the pool.
        unsafe {
            (*cell).value.assume_init_drop();
            T::pool().push_freed(cell);
        }
    }
}
