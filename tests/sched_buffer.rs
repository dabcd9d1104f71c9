//! `spawn_with_buffer`: a coroutine's scratch buffer at the top of its own stack slot.
//! gort's own API (Go has no counterpart; its heap gives `make([]byte, n)` the same lazily
//! backed memory).
use std::collections::HashSet;
use std::hint::black_box;
use std::io;

use gort::runtime;

mod common;

#[test]
fn buffer_has_the_asked_length_and_is_zeroed() {
    let rt = runtime::Builder::new().workers(2).build().unwrap();
    rt.run(|| {
        for len in [0usize, 1, 7, 63, 64, 65, 100, 4096, 5000, 65536] {
            let h = gort::spawn_with_buffer(len, move |buf| {
                let zero = buf.iter().all(|&b| b == 0);
                // Every byte is ours to write.
                buf.fill(0xA5);
                (buf.len(), zero)
            });
            assert_eq!(h.join().unwrap(), (len, true), "len {len}");
        }
    });
}

/// A stack comes back warm from the worker's cache: what the last coroutine left in the
/// buffer's place (its own buffer, or the frames of a coroutine of the same stack size class
/// with no buffer) must not show through.
#[test]
fn reused_stacks_give_zeroed_buffers() {
    const LEN: usize = 4096;
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let seen = rt.run(|| {
        let mut seen = HashSet::new();
        for i in 0..60 {
            let h = gort::spawn_with_buffer(LEN, |buf| {
                let zero = buf.iter().all(|&b| b == 0);
                buf.fill(0xAA);
                (buf.as_ptr() as usize, zero)
            });
            let (at, zero) = h.join().unwrap();
            assert!(zero, "round {i}: buffer at {at:#x} held old bytes");
            seen.insert(at);
            // A plain coroutine whose stack may be the same slot: its deep frames write over
            // the place where the next buffer lies.
            let size = 64 * 1024 + 5 * 1024;
            gort::Builder::new()
                .stack_size(size)
                .spawn(|| dirty_frames(40))
                .unwrap()
                .join()
                .unwrap();
        }
        seen
    });
    // The test means something only if slots were reused.
    assert!(
        seen.len() < 60,
        "no stack reused: {} distinct buffers",
        seen.len()
    );
}

/// Writes a 1 KiB frame of 0x55 per level, `depth` levels deep.
fn dirty_frames(depth: usize) -> u8 {
    let mut a = [0x55u8; 1024];
    black_box(&mut a);
    if depth == 0 {
        return a[0];
    }
    dirty_frames(depth - 1).wrapping_add(a[1023])
}

/// Deep frames, parking and other coroutines never write into a live buffer.
#[test]
fn frames_stay_out_of_the_buffer() {
    let rt = runtime::Builder::new().workers(2).build().unwrap();
    rt.run(|| {
        let hs: Vec<_> = (0..64u8)
            .map(|k| {
                gort::spawn_with_buffer(3000, move |buf| {
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = k ^ i as u8;
                    }
                    for _ in 0..5 {
                        // 40 KiB of frames below the buffer, with yields in the middle.
                        black_box(dirty_frames_yield(40));
                        gort::yield_now();
                    }
                    buf.iter().enumerate().all(|(i, &b)| b == k ^ i as u8)
                })
            })
            .collect();
        for (k, h) in hs.into_iter().enumerate() {
            assert!(h.join().unwrap(), "coroutine {k}: its buffer changed");
        }
    });
}

fn dirty_frames_yield(depth: usize) -> u8 {
    let mut a = [0x55u8; 1024];
    black_box(&mut a);
    if depth == 0 {
        gort::yield_now();
        return a[0];
    }
    dirty_frames_yield(depth - 1).wrapping_add(a[1023])
}

/// The buffer comes on top of the stack size asked for: 16 KiB of stack and a 64 KiB buffer
/// still leave the frames their 16 KiB.
#[test]
fn buffer_does_not_shrink_the_stack() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let r = rt.run(|| {
        gort::Builder::new()
            .stack_size(16 * 1024)
            .spawn_with_buffer(64 * 1024, |buf| {
                buf[65535] = 1;
                // About 12 KiB of frames.
                dirty_frames(11) as usize + buf.len()
            })
            .unwrap()
            .join()
            .unwrap()
    });
    assert_eq!(r, (0x55usize * 12) % 256 + 64 * 1024);
}

#[test]
fn oversized_buffer_is_an_error() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    rt.run(|| {
        let e = gort::Builder::new()
            .spawn_with_buffer(usize::MAX, |buf| buf.len())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("spawn_with_buffer"), "{e}");
        let e = gort::Builder::new()
            .spawn_with_buffer(8 << 20, |buf| buf.len())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // The largest allowed one works.
        let max = gort::MAX_BUFFER;
        assert_eq!(max, 65535 * 64);
        let h = gort::Builder::new()
            .spawn_with_buffer(max, |buf| buf.len())
            .unwrap();
        assert_eq!(h.join().unwrap(), max);
    });
}

#[test]
fn panic_in_a_buffered_coroutine_is_a_join_error() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    rt.run(|| {
        let h = gort::spawn_with_buffer(4096, |buf| {
            buf[0] = 1;
            if black_box(true) {
                panic!("boom in buffer coroutine");
            }
            buf[0]
        });
        assert!(h.join().is_err());
        // The slot is reused, zeroed.
        let h = gort::spawn_with_buffer(4096, |buf| buf.iter().all(|&b| b == 0));
        assert!(h.join().unwrap());
    });
}

/// The point of the buffer: parked coroutines that wrote only the start of a large buffer do
/// not pay for the rest of it. 300 coroutines with 64 KiB buffers, each written 64 bytes, then
/// parked: touching the buffers would add ~19 MiB of RSS; untouched, they add a page or two
/// each. Run in a child process, whose fresh stacks come zeroed from the kernel.
#[test]
fn parked_buffers_stay_unbacked() {
    if !common::in_child_process(
        "parked_buffers_stay_unbacked",
        "GORT_BUFFER_RSS_CHILD",
        "buffers ok",
    ) {
        return;
    }
    const N: usize = 300;
    const LEN: usize = 64 * 1024;
    let rt = runtime::Builder::new().workers(2).build().unwrap();
    rt.run(|| {
        let before = rss_anon_kib();
        let (tx, rx) = gort::chan::bounded::<()>(0);
        let wg = gort::sync::WaitGroup::new();
        wg.add(N as i64);
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let rx = rx.clone();
                let wg = wg.clone();
                gort::spawn_with_buffer(LEN, move |buf| {
                    buf[..64].fill(7);
                    wg.done();
                    let _ = rx.recv();
                    buf[..64].iter().all(|&b| b == 7)
                })
            })
            .collect();
        wg.wait();
        let grown = rss_anon_kib().saturating_sub(before);
        drop(tx);
        for h in hs {
            assert!(h.join().unwrap());
        }
        // Each coroutine: a stack page or two (its frames and the first buffer bytes share
        // one), plus its share of the task pool. Half the buffers touched would be 9.4 MiB.
        assert!(
            grown < N * 24,
            "{N} parked coroutines with untouched {LEN}-byte buffers grew RSS by {grown} KiB"
        );
        println!("buffers ok: {grown} KiB for {N}");
    });
}

/// `RssAnon` of this process in KiB.
fn rss_anon_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/self/status")
}
