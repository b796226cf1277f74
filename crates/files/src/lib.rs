//! Files written whole or not at all: the one atomic write of the workspace (images,
//! reports, checkpoints, exported models, datalists).
//!
//! The new content goes to a temporary file in the target's own folder (so the rename
//! cannot cross file systems) with a name no other writer can take, even a thread of the
//! same process writing the same target; it is flushed to disk, renamed over the target and
//! the folder synced, so a reader sees the old file or the new one, and a crash leaves at
//! worst a hidden `.aiaa-tmp-*` file, never a torn target. The file gets the usual
//! `0666 & !umask` mode, not the `0600` of a temporary file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |tmp| {
        let mut f = std::fs::OpenOptions::new().write(true).open(tmp)?;
        f.write_all(bytes)
    })
}

/// Lets `fill` write the content to a temporary path next to `path` (for writers that want
/// a path, such as libtorch's), then makes it `path` atomically. An error from `fill` leaves
/// `path` as it was and removes the temporary file.
pub fn write_with(path: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let dir = folder_of(path);
    let tmp = tempfile::Builder::new()
        .prefix(".aiaa-tmp-")
        // libtorch's archive writer names the archive after the file name up to its last
        // dot, and refuses an empty one (`.aiaa-tmp-XXXXXX` alone would be).
        .suffix(".tmp")
        .permissions(PermissionsExt::from_mode(0o666))
        .tempfile_in(&dir)?
        .into_temp_path();
    fill(&tmp)?;
    File::open(&tmp)?.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable; a folder that cannot be opened (not every platform
    // allows it) only loses that.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The folder a file is written in (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".aiaa-tmp-"))
            .collect()
    }

    #[test]
    fn replaces_the_file_whole_with_the_usual_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        write(&path, b"new content").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new content");
        // The mode any new file gets (0666 less the umask), not a temporary file's
        // owner-only one: outputs are shared with viewers and other users.
        let plain = dir.path().join("plain.bin");
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let err = write_with(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
    }

    /// Eight threads of one process writing one target never collide on a temporary name
    /// (a name made of the pid alone did) and the result is one writer's content, whole.
    #[test]
    fn threads_writing_one_file_each_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.json");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        write(path, &vec![t; 64 << 10]).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 64 << 10);
        assert!(got.iter().all(|b| *b == got[0]));
        assert!(leftovers(dir.path()).is_empty());
    }
}
