//! [`CoroIdent`]: a coroutine's id, spawn site and optional name in two words (it lives in
//! every task header, see task.rs), readable from the stack-overflow signal handler (its
//! accessors are plain loads).
//!
//! Invariant: `meta` is set once by [`CoroIdent::new`] and never changes; a tagged one owns a
//! leaked `Box<Named>` that only `Drop` frees.
use std::panic::Location;

/// Identity of a coroutine, shown when it overflows its stack: its id, where it was spawned
/// and its optional user-given name, in two words (it lives in every task header).
pub(crate) struct CoroIdent {
    /// Coroutine id.
    pub id: u64,
    /// The spawn site (`&'static Location`), or, low bit set, a leaked `Box<Named>` (names
    /// are rare: a second allocation for them is cheap, a word per task is not). Both are
    /// 8-aligned, so the low bit is free. Never changes; `Drop` frees the box.
    meta: usize,
}

/// The identity of a named coroutine (see [`CoroIdent::meta`]).
struct Named {
    name: Box<str>,
    site: &'static Location<'static>,
}

const _: () = assert!(
    std::mem::align_of::<Location<'static>>() >= 2 && std::mem::align_of::<Named>() >= 2,
    "CoroIdent: the tag bit must be free"
);

impl CoroIdent {
    #[inline]
    pub(crate) fn new(
        id: u64,
        name: Option<String>,
        site: &'static Location<'static>,
    ) -> CoroIdent {
        let meta = match name {
            None => site as *const Location<'static> as usize,
            Some(n) => named_meta(n, site),
        };
        CoroIdent { id, meta }
    }

    fn named(&self) -> Option<&Named> {
        if self.meta & 1 == 0 {
            return None;
        }
        // SAFETY: a tagged `meta` is a `Box<Named>` from `new`, freed only by `Drop`.
        Some(unsafe { &*((self.meta & !1) as *const Named) })
    }

    /// The user-given name. (Async-signal-safe: plain loads.)
    pub(crate) fn name(&self) -> Option<&str> {
        self.named().map(|n| &*n.name)
    }

    /// Where the coroutine was spawned. (Async-signal-safe: plain loads.)
    pub(crate) fn site(&self) -> &'static Location<'static> {
        match self.named() {
            Some(n) => n.site,
            // SAFETY: an untagged `meta` is the `&'static Location` given to `new`.
            None => unsafe { &*(self.meta as *const Location<'static>) },
        }
    }
}

/// The tagged `meta` of a named coroutine (out of line: names are rare).
#[cold]
#[inline(never)]
fn named_meta(name: String, site: &'static Location<'static>) -> usize {
    let named = Box::new(Named {
        name: name.into_boxed_str(),
        site,
    });
    Box::into_raw(named) as usize | 1
}

impl Drop for CoroIdent {
    fn drop(&mut self) {
        if self.meta & 1 == 1 {
            // SAFETY: a tagged `meta` is the `Box<Named>` leaked by `new`, freed once here.
            drop(unsafe { Box::from_raw((self.meta & !1) as *mut Named) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_unnamed_idents() {
        let site = Location::caller();
        let a = CoroIdent::new(1, None, site);
        assert_eq!(a.name(), None);
        assert!(std::ptr::eq(a.site(), site));
        let b = CoroIdent::new(2, Some("conn".into()), site);
        assert_eq!(b.name(), Some("conn"));
        assert!(std::ptr::eq(b.site(), site));
        assert_eq!(std::mem::size_of::<CoroIdent>(), 16);
    }
}
