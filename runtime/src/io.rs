//! Atomic file writes: a reader never sees a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a reader never sees a half-written file:
/// into a temporary file in the same directory (`.NAME.tmp-PID`), synced,
/// then renamed over `path`.
///
/// Only a regular file (or a path where nothing exists yet) is replaced that
/// way. A character device or a FIFO (`/dev/null`, `/dev/stdout`, a named
/// pipe) is written straight into, as a shell's `>` would, and stays what it
/// is. A directory, a block device, a socket or anything else is refused
/// with an `InvalidInput` error saying what it is (callers name the path). A symbolic link is
/// followed: what it points to is written, the link stays.
///
/// Before writing, temporaries of `path` left by a gradc process that no
/// longer runs (killed mid-write) are removed: `.NAME.tmp-PID` where PID is
/// not ours and not a live process (Linux: no `/proc/PID`; where `/proc` is
/// missing, nothing is removed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_synced(path, bytes, true)
}

/// `write_atomic`, the temporary synced to disk before the rename only with
/// `sync`: either way a reader never sees a half-written file (the rename is
/// atomic). A writer of many files writes them unsynced and calls `sync_dir`
/// once at the end.
pub fn write_atomic_synced(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    // Through a symbolic link: write what it points to and keep the link
    // (`/dev/stdout` redirected to a file is such a link).
    let resolved = std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_symlink())
        .then(|| std::fs::canonicalize(path).ok())
        .flatten();
    let path = resolved.as_deref().unwrap_or(path);
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(meta) => return write_special(path, &meta, bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temporaries(&dir, &file_name);
    let tmp = dir.join(format!("{}{}", temp_prefix(&file_name), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Syncs the directory `dir` (its entries, so the renames of the files
/// written into it), once after writing many files unsynced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What every temporary of `file_name` starts with; the writer's PID follows.
fn temp_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp-")
}

/// Writes into something that exists and is not a regular file: straight
/// into a character device or FIFO, never replacing it; refuses the rest.
fn write_special(path: &Path, meta: &std::fs::Metadata, bytes: &[u8]) -> std::io::Result<()> {
    let kind = special_kind(meta);
    if !matches!(kind, "a character device" | "a FIFO") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("refusing to replace {kind} with a file"),
        ));
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(bytes)?;
    f.flush()
}

/// What a path that is not a regular file is, in words.
fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Removes `dir`'s temporaries of `file_name` whose writer is gone (see
/// [`write_atomic`]). Best effort: a temporary that cannot be listed or
/// removed is left alone.
fn remove_stale_temporaries(dir: &Path, file_name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix(file_name);
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && pid != own && !proc.join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("gradc-io-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn unsynced_writes_are_whole_and_the_directory_syncs() {
        let dir = TempDir::new("unsynced");
        for k in 0..3 {
            let p = dir.path().join(format!("{k}.npy"));
            write_atomic_synced(&p, b"first", false).unwrap();
            write_atomic_synced(&p, format!("value {k}").as_bytes(), false).unwrap();
        }
        sync_dir(dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["0.npy", "1.npy", "2.npy"], "no temporary is left");
        assert_eq!(std::fs::read(dir.path().join("2.npy")).unwrap(), b"value 2");
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn replaces_a_regular_file_and_creates_a_missing_one() {
        let dir = TempDir::new("replace");
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_is_refused_and_left_alone() {
        let dir = TempDir::new("dir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = write_atomic(&sub, b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("a directory"), "{err}");
        assert!(sub.is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn dev_null_is_written_into_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        if !null.exists() {
            return;
        }
        write_atomic(null, b"discarded").unwrap();
        assert!(std::fs::metadata(null)
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_is_followed_and_kept() {
        let dir = TempDir::new("link");
        let target = dir.path().join("target.txt");
        let link = dir.path().join("link.txt");
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let dir = TempDir::new("stale");
        let p = dir.path().join("ckpt.bin");
        // A PID above the kernel's maximum (2^22) is never alive.
        let dead = dir.path().join(".ckpt.bin.tmp-99999999");
        let own = dir
            .path()
            .join(format!(".ckpt.bin.tmp-{}", std::process::id()));
        let other_file = dir.path().join(".other.bin.tmp-99999999");
        let not_a_pid = dir.path().join(".ckpt.bin.tmp-x");
        for f in [&dead, &own, &other_file, &not_a_pid] {
            std::fs::write(f, b"partial").unwrap();
        }
        write_atomic(&p, b"whole").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"whole");
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists(), "the dead writer's temporary is removed");
        }
        // Ours is the one just renamed; the others are not of this file or not ours.
        assert!(!own.exists());
        assert!(other_file.exists() && not_a_pid.exists());
    }
}
