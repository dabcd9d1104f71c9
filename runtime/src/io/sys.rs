//! Raw `read`, `recv`, `write` and `send` for the I/O hot paths.
//!
//! glibc's `read`/`write`/`send` are pthread cancellation points: each call enables and
//! disables asynchronous cancellation around the syscall (about 40 instructions per call).
//! gort never cancels threads, so it calls the kernel directly, as Go's runtime does. On
//! x86_64 the `syscall` instruction is issued inline: the kernel's return value carries the
//! error (`-errno`), so no call through libc's variadic `syscall(2)` and no `errno` round
//! trip through thread-local storage. Other targets use `libc::syscall`.
use std::io;
use std::os::fd::RawFd;

/// Issues syscall `n` with six arguments (calls with fewer pass zeros, which the kernel
/// ignores); the kernel's raw return value.
///
/// # Safety
/// The arguments must be valid for syscall `n` (pointers valid for what it reads and writes).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn syscall6(
    n: libc::c_long,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 Linux syscall ABI: number in rax, arguments in rdi, rsi, rdx, r10, r8
    // and r9; the kernel clobbers rcx and r11 and returns in rax; it does not touch our stack.
    // Memory the pointers name may be read or written (no `nomem`/`readonly`), which the
    // caller vouches for.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw return value (`-errno` on failure, as the kernel returns it) as a result.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn cvt_raw(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// A libc return value (-1 and `errno` on failure) as a result.
#[cfg(not(target_arch = "x86_64"))]
fn cvt_libc(r: libc::c_long) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Syscall `n` with arguments (fd, pointer, length), as a result.
///
/// # Safety
/// The arguments must be valid for syscall `n`: `ptr` valid for `len` bytes of whatever the
/// call does with its buffer.
#[inline(always)]
unsafe fn fd_ptr_len(n: libc::c_long, fd: RawFd, ptr: usize, len: usize) -> io::Result<usize> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    return cvt_raw(unsafe { syscall6(n, fd as usize, ptr, len, 0, 0, 0) });
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    return cvt_libc(unsafe { libc::syscall(n, fd as libc::c_long, ptr, len) });
}

/// `read(2)`.
///
/// # Safety
/// `buf` must be valid for `len` bytes of writes.
#[inline]
pub(super) unsafe fn read(fd: RawFd, buf: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: the caller guarantees `buf`/`len`; the kernel checks `fd`.
    unsafe { fd_ptr_len(libc::SYS_read, fd, buf as usize, len) }
}

/// `write(2)`.
///
/// # Safety
/// `buf` must be valid for `len` bytes of reads.
/// `recv(fd, buf, len, 0)`: a socket read that skips the VFS layer `read(2)` goes through
/// (`fdget_pos`, `rw_verify_area`, `sock_read_iter`); std's `TcpStream::read` makes the same
/// choice. Perf on the echo benchmark: about 0.5 µs less kernel time per round trip.
///
/// # Safety
/// `buf` must be valid for `len` writable bytes.
#[inline]
pub(super) unsafe fn recv(fd: RawFd, buf: *mut u8, len: usize) -> io::Result<usize> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract; null address pointers ask for no peer address.
    return cvt_raw(unsafe {
        syscall6(libc::SYS_recvfrom, fd as usize, buf as usize, len, 0, 0, 0)
    });
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller's contract.
    return cvt_libc(unsafe { libc::recv(fd, buf.cast(), len, 0) } as libc::c_long);
}

#[inline]
pub(super) unsafe fn write(fd: RawFd, buf: *const u8, len: usize) -> io::Result<usize> {
    // SAFETY: the caller guarantees `buf`/`len`; the kernel checks `fd`.
    unsafe { fd_ptr_len(libc::SYS_write, fd, buf as usize, len) }
}

/// `send(2)`: `sendto` with no address, which is what glibc's `send` does.
///
/// # Safety
/// `buf` must be valid for `len` bytes of reads.
#[inline]
pub(super) unsafe fn send(
    fd: RawFd,
    buf: *const u8,
    len: usize,
    flags: libc::c_int,
) -> io::Result<usize> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees `buf`/`len`; a null address with length 0 is `send`.
    return cvt_raw(unsafe {
        syscall6(
            libc::SYS_sendto,
            fd as usize,
            buf as usize,
            len,
            flags as usize,
            0,
            0,
        )
    });
    #[cfg(not(target_arch = "x86_64"))]
    {
        let none: *const libc::sockaddr = std::ptr::null();
        // SAFETY: as above.
        return cvt_libc(unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd as libc::c_long,
                buf,
                len,
                flags as libc::c_long,
                none,
                0 as libc::c_long,
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    #[test]
    fn raw_calls_move_bytes_and_report_errno() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: valid buffers of the given lengths.
        unsafe {
            assert_eq!(super::write(a.as_raw_fd(), b"hi".as_ptr(), 2).unwrap(), 2);
            assert_eq!(
                super::send(a.as_raw_fd(), b"!".as_ptr(), 1, libc::MSG_NOSIGNAL).unwrap(),
                1
            );
            let mut buf = [0u8; 8];
            assert_eq!(super::read(b.as_raw_fd(), buf.as_mut_ptr(), 2).unwrap(), 2);
            assert_eq!(
                super::recv(b.as_raw_fd(), buf[2..].as_mut_ptr(), 6).unwrap(),
                1
            );
            assert_eq!(&buf[..3], b"hi!");
            let e = super::read(-1, buf.as_mut_ptr(), 8).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EBADF));
            // A socket with nothing to read and O_NONBLOCK: EAGAIN, i.e. WouldBlock.
            b.set_nonblocking(true).unwrap();
            let e = super::read(b.as_raw_fd(), buf.as_mut_ptr(), 8).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
            let e = super::recv(b.as_raw_fd(), buf.as_mut_ptr(), 8).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
            drop(b);
            let e = super::send(a.as_raw_fd(), b"x".as_ptr(), 1, libc::MSG_NOSIGNAL).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
        }
    }
}
