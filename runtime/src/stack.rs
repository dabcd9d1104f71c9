//! Coroutine stacks (placeholder; see the stack helper's work).
