#![allow(unsafe_code)] // The one module allowed to use unsafe; see the module docs.
//! The only module with `unsafe`: the few process-level operations that
//! have no safe wrapper (taking ownership of an inherited fd, code that runs
//! in a forked child before exec). Each block states why it is sound.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::libc;

/// Keeps a long-running process's heap small: one malloc arena for all
/// threads (the default is one per thread and core, each holding on to
/// what its thread freed), and buffers of 256 KiB or more mapped and
/// unmapped on their own (glibc otherwise raises that threshold after the
/// first such free and keeps later ones in the heap). A process's peak RSS
/// is then close to what it holds at once. Call before any thread starts.
pub fn tune_malloc() {
    // SAFETY: mallopt only changes glibc's allocator parameters; it is
    // called at start-up before any other thread exists, so no allocation
    // runs concurrently with it. Its result (1 or 0) only tells whether
    // the value was accepted, and an ignored value leaves the defaults.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 10);
    }
}

/// Takes ownership of a file descriptor this process inherited at a known
/// number (the ctl socket at 3, the changelog socket at 4). Fails if the fd
/// is not open, and refuses 0-2.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "fds 0-2 are stdio"));
    }
    nix::fcntl::fcntl(
        // SAFETY: the fd number is only borrowed for this one fcntl(F_GETFD)
        // call, which checks that it is open without changing anything.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .map_err(io::Error::from)?;
    // SAFETY: the fd is open (checked above) and was placed at this number for
    // this process by its parent; nothing else in this process owns it, and
    // callers take each number once at start-up.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Spawns `cmd` with each `(fd, target)` of `fds` placed at its target
/// number, every other inherited fd closed at exec, and the parent-death
/// signal set to SIGTERM, so that no child outlives its supervisor.
pub fn spawn_with_fds(cmd: &mut Command, fds: &[(&OwnedFd, RawFd)]) -> io::Result<Child> {
    spawn_placed(cmd, fds, false)
}

/// Like [`spawn_with_fds`], but the child is meant to outlive this process:
/// no parent-death signal, and a session of its own, so that signals to our
/// process group or session (a closed ssh connection) do not reach it.
pub fn spawn_detached_with_fds(cmd: &mut Command, fds: &[(&OwnedFd, RawFd)]) -> io::Result<Child> {
    spawn_placed(cmd, fds, true)
}

fn spawn_placed(cmd: &mut Command, fds: &[(&OwnedFd, RawFd)], detach: bool) -> io::Result<Child> {
    if fds.len() > 8 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "at most 8 fds can be placed"));
    }
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    let first_free = pairs.iter().map(|(_, t)| *t + 1).max().unwrap_or(3).max(3);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (fcntl, dup2, prctl, getppid, close_range) on
    // plain integers captured by value (setsid too); it allocates nothing and
    // takes no lock. At most 8 pairs are placed, checked above.
    unsafe {
        cmd.pre_exec(move || {
            // Move sources out of the way first so that placing one fd cannot
            // clobber another source that sits at a target number.
            let mut moved = [(-1, -1); 8];
            for (i, (src, dst)) in pairs.iter().enumerate().take(8) {
                let tmp = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 64);
                if tmp < 0 {
                    return Err(io::Error::last_os_error());
                }
                moved[i] = (tmp, *dst);
            }
            for (tmp, dst) in moved.iter().take(pairs.len().min(8)) {
                // dup2 clears FD_CLOEXEC on the new descriptor.
                if libc::dup2(*tmp, *dst) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Everything above the placed fds closes at exec. CLOEXEC rather
            // than close, so std's exec-error pipe keeps working.
            if libc::syscall(
                libc::SYS_close_range,
                first_free as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            if detach {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the line above: then no
                // signal will ever come, so do not start at all.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `msg` on `tx` when SIGTERM or SIGINT arrives (once), from a
/// thread: how a role's event loop learns that it should stop cleanly.
pub fn forward_termination<T: Send + 'static>(tx: std::sync::mpsc::Sender<T>, msg: T) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(msg);
        }
    })?;
    Ok(())
}
