//! Watching the config file: a mounted ConfigMap changes under a running process (the kubelet
//! swaps a symlink), with no signal. The file is read again at a fixed interval and compared
//! by content, which sees a symlink swap, an edit in place and a copy alike; events from the
//! kernel (inotify) miss the swap unless the directory is watched, and the file is small.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The content of a config file as last seen.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    /// A hash of the content last seen; `None` while the file could not be read.
    seen: Option<u64>,
}

impl FileWatch {
    /// Starts from the file's content now.
    pub fn new(path: &Path) -> Self {
        let seen = digest(path).ok();
        Self {
            path: path.to_owned(),
            seen,
        }
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the content changed since the last call (or since [`Self::new`]). A file that
    /// cannot be read (missing for a moment while a symlink is swapped) is an error and does
    /// not count as a change; once readable again, it is compared with what was last seen.
    pub fn changed(&mut self) -> std::io::Result<bool> {
        let now = digest(&self.path)?;
        let changed = self.seen.is_some_and(|seen| seen != now);
        self.seen = Some(now);
        Ok(changed)
    }
}

fn digest(path: &Path) -> std::io::Result<u64> {
    let content = std::fs::read(path)?;
    let mut h = DefaultHasher::new();
    content.hash(&mut h);
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_once_whether_edited_in_place_or_swapped_by_a_symlink() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let (a, b, link) = (dir.join("a.toml"), dir.join("b.toml"), dir.join("strait.toml"));
        std::fs::write(&a, "[budget]\nbytes_per_sec = 1\n").expect("write");
        std::fs::write(&b, "[budget]\nbytes_per_sec = 2\n").expect("write");
        std::os::unix::fs::symlink(&a, &link).expect("link");
        let mut watch = FileWatch::new(&link);
        assert!(!watch.changed().expect("readable"), "nothing changed yet");
        // The kubelet's way: the link now points at another file.
        let next = dir.join("next");
        std::os::unix::fs::symlink(&b, &next).expect("link");
        std::fs::rename(&next, &link).expect("swap");
        assert!(watch.changed().expect("readable"), "the swap is a change");
        assert!(!watch.changed().expect("readable"), "seen once");
        // Missing for a moment: an error, not a change; the same content back is no change.
        std::fs::remove_file(&link).expect("remove");
        assert!(watch.changed().is_err());
        std::os::unix::fs::symlink(&b, &link).expect("link");
        assert!(!watch.changed().expect("readable"));
        // Edited in place.
        std::fs::write(&b, "[budget]\nbytes_per_sec = 3\n").expect("write");
        assert!(watch.changed().expect("readable"));
    }
}
