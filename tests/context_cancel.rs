//! Contexts (mirrors Go's context tests: TestWithCancel, TestParentFinishesChild,
//! TestDeadline, TestTimeout, TestValues, TestAfterFuncCalledAfterCancel).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::context::{self, ContextError};

#[test]
fn cancel_propagates_to_children() {
    gort::run(|| {
        let bg = context::background();
        assert!(bg.err().is_none() && bg.deadline().is_none());
        let (parent, cancel) = context::with_cancel(&bg);
        let (child, _c1) = context::with_cancel(&parent);
        let vchild = context::with_value(&child, "k", 5u32);
        let (grand, _c2) = context::with_timeout(&vchild, Duration::from_secs(60));
        let done = grand.done();
        let h = gort::spawn(move || {
            gort::select! {
                recv(done) -> v => v.is_err(),
                recv(gort::time::after(Duration::from_secs(5))) -> _ => false,
            }
        });
        gort::time::sleep(Duration::from_millis(5));
        assert!(grand.err().is_none());
        cancel.cancel();
        assert!(h.join().unwrap(), "done() not closed on cancel");
        for c in [&parent, &child, &vchild, &grand] {
            assert_eq!(c.err(), Some(ContextError::Canceled));
        }
        assert_eq!(vchild.value::<&str, u32>(&"k"), Some(&5));
        assert_eq!(grand.value::<&str, u32>(&"k"), Some(&5));
        assert_eq!(grand.value::<&str, u32>(&"x"), None);
        assert_eq!(ContextError::Canceled.to_string(), "context canceled");
        // A child of a cancelled parent is born cancelled.
        let (late, _c) = context::with_cancel(&parent);
        assert!(late.done().recv().is_err());
    });
}

#[test]
fn deadline_exceeded_not_early() {
    gort::run(|| {
        let t = Instant::now();
        let (ctx, _cancel) =
            context::with_timeout(&context::background(), Duration::from_millis(15));
        let (child, _c) = context::with_deadline(&ctx, Instant::now() + Duration::from_secs(10));
        assert_eq!(
            child.deadline(),
            ctx.deadline(),
            "child deadline capped by parent"
        );
        assert!(child.done().recv().is_err());
        assert!(t.elapsed() >= Duration::from_millis(15));
        assert_eq!(child.err(), Some(ContextError::DeadlineExceeded));
        assert_eq!(ctx.err().unwrap().to_string(), "context deadline exceeded");
    });
}

#[test]
fn after_func_runs_once_or_stops() {
    gort::run(|| {
        let n = Arc::new(AtomicUsize::new(0));
        let (ctx, cancel) = context::with_cancel(&context::background());
        let n2 = n.clone();
        let stop = context::after_func(&ctx, move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        let (ctx2, cancel2) = context::with_cancel(&context::background());
        let n3 = n.clone();
        let stop2 = context::after_func(&ctx2, move || {
            n3.fetch_add(100, Ordering::SeqCst);
        });
        assert!(stop2.stop());
        cancel2.cancel();
        cancel.cancel();
        gort::time::sleep(Duration::from_millis(20));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(!stop.stop());
    });
}
