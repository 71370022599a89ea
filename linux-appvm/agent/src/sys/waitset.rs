//! Waiting on any number of descriptors, for reading or writing (the qrexec daemon's loop:
//! the channel's interrupt, the socket, and each call's pipes and connections).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// A descriptor and what to wait for on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub fd: RawFd,
    pub read: bool,
    pub write: bool,
}

/// Waits until one of `interests` is ready (hang-ups and errors count as ready: the next
/// read or write says which) or `timeout` passes (`None`: no limit); which are ready. An
/// interrupted wait counts as a timeout.
pub fn wait(interests: &[Interest], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut fds: Vec<libc::pollfd> = interests
        .iter()
        .map(|i| libc::pollfd {
            fd: i.fd,
            events: if i.read { libc::POLLIN } else { 0 } | if i.write { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    let rc = ppoll(&mut fds, timeout)?;
    Ok(fds.iter().map(|p| rc > 0 && p.revents != 0).collect())
}

/// `ppoll` on `fds` for at most `timeout` (`None`: no limit): how many are ready, 0 when the
/// time ran out or a signal came (an interrupted wait counts as a timeout).
pub fn ppoll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<i32> {
    // To the nanosecond (the agent's short polls are well under a millisecond).
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: (1) `fds` is a valid, writable array of `fds.len()` pollfd structures, alive
    // for the call, that the kernel writes `revents` into; (2) `tsp` is null or points at
    // `ts`, which outlives the call; (3) no signal mask is passed.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            tsp,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        return Ok(0);
    }
    Ok(rc)
}

/// Sends `signal` to the process group `pgid` (a child started in a group of its own: it
/// and everything it started).
pub fn kill_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such process group"))?;
    // SAFETY: kill with a negative pid (a process group, `pgid` > 0 checked) and a signal
    // number the caller gives; no memory is passed.
    if unsafe { libc::kill(-pgid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn reports_readable_and_writable() {
        let (r, mut w) = io::pipe().unwrap();
        let want = [
            Interest {
                fd: r.as_raw_fd(),
                read: true,
                write: false,
            },
            Interest {
                fd: w.as_raw_fd(),
                read: false,
                write: true,
            },
        ];
        let ready = wait(&want, Some(Duration::from_millis(10))).unwrap();
        assert_eq!(ready, [false, true]);
        w.write_all(b"x").unwrap();
        let ready = wait(&want[..1], Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, [true]);
        assert!(kill_group(0, libc::SIGKILL).is_err());
    }
}
