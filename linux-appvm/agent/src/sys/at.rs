//! The `*at` system calls, relative to an open directory: what the file-copy receiver
//! (`services::filecopy`) needs so that a name it is given is looked up in that directory
//! and nowhere else. No call here follows a symbolic link in the last component (the only
//! component: a name with `/` is refused before the call), and none creates one.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single name",
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn open_at(dir: &File, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    let name = c_name(name)?;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string, both alive
    // for the call; the result is checked and a new descriptor is owned by nobody else.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    })?;
    // SAFETY: `fd` was just returned by openat and is owned only by the new `File`.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Opens the directory `name` in `dir`; fails (ELOOP or ENOTDIR) if it is a symbolic link
/// or not a directory.
pub fn open_dir_at(dir: &File, name: &str) -> io::Result<File> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// Creates the regular file `name` in `dir` for writing with `mode` (less the umask); fails
/// with EEXIST if anything, a dangling symbolic link included, has that name.
pub fn create_file_at(dir: &File, name: &str, mode: u32) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    open_at(dir, name, flags, mode as libc::mode_t)
}

/// Whether anything (a dangling symbolic link included) is named `name` in `dir`.
pub fn exists_at(dir: &File, name: &str) -> io::Result<bool> {
    match open_at(dir, name, libc::O_PATH, 0) {
        Ok(_) => Ok(true),
        // O_PATH | O_NOFOLLOW opens a symbolic link itself, but be sure.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the directory `name` in `dir` with `mode` (less the umask).
pub fn mkdir_at(dir: &File, name: &str, mode: u32) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string for the call.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// Renames `from` to `to`, both in `dir`, only if nothing is named `to` (RENAME_NOREPLACE;
/// EEXIST otherwise). Through `syscall` so that an older C library without `renameat2`
/// still links.
pub fn rename_noreplace_at(dir: &File, from: &str, to: &str) -> io::Result<()> {
    let (from, to) = (c_name(from)?, c_name(to)?);
    let fd = libc::c_long::from(dir.as_raw_fd());
    // SAFETY: renameat2 takes (dirfd, path, dirfd, path, flags); both descriptors are open
    // and both paths NUL-terminated strings alive for the call. The result is checked.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            fd,
            from.as_ptr(),
            fd,
            to.as_ptr(),
            libc::c_long::from(libc::RENAME_NOREPLACE),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Removes the file `name` (not a directory) from `dir`.
pub fn unlink_at(dir: &File, name: &str) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string for the call.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_stay_in_the_directory() {
        let root = std::env::temp_dir().join(format!("agent-at-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::os::unix::fs::symlink(root.join("d"), root.join("link")).unwrap();
        let dir = File::open(&root).unwrap();
        for bad in ["", "a/b", "..", "a\0"] {
            assert!(create_file_at(&dir, bad, 0o600).is_err());
        }
        assert!(open_dir_at(&dir, "link").is_err());
        assert!(create_file_at(&dir, "link", 0o600).is_err());
        assert!(exists_at(&dir, "link").unwrap());
        assert!(!exists_at(&dir, "none").unwrap());
        let mut f = create_file_at(&dir, "t", 0o600).unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(
            rename_noreplace_at(&dir, "t", "link")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EEXIST)
        );
        rename_noreplace_at(&dir, "t", "u").unwrap();
        mkdir_at(&dir, "e", 0o755).unwrap();
        assert!(open_dir_at(&dir, "e").is_ok());
        unlink_at(&dir, "u").unwrap();
        assert!(!exists_at(&dir, "u").unwrap());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
