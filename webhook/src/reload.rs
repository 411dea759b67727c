//! Change detection for mounted files by polling their contents. ConfigMap and Secret volumes
//! update by swapping a `..data` symlink, which inotify on the file itself misses; reading through
//! the path sees the new target, so comparing contents catches every kind of update.

use std::path::PathBuf;

/// The contents of the watched files, in order, or why one of them could not be read.
pub type Snapshot = Result<Vec<Vec<u8>>, String>;

/// Polls a fixed set of files and reports when what they contain changes.
#[derive(Debug)]
pub struct FileWatch {
    paths: Vec<PathBuf>,
    last: Option<Snapshot>,
}

impl FileWatch {
    /// Watches `paths` (read together, so a certificate and its key are seen as one change).
    pub fn new(paths: Vec<PathBuf>) -> Self {
        FileWatch { paths, last: None }
    }

    /// Reads all the files now.
    pub fn read(&self) -> Snapshot {
        self.paths.iter().map(|p| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))).collect()
    }

    /// The new contents if they differ from the last poll (the first poll always reports).
    pub fn poll(&mut self) -> Option<Snapshot> {
        let now = self.read();
        if self.last.as_ref() == Some(&now) {
            return None;
        }
        self.last = Some(now.clone());
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_changes_through_symlink_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("v1");
        let v2 = dir.path().join("v2");
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("config"), "a: 1").unwrap();
        std::fs::write(v2.join("config"), "a: 2").unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink(&v1, &data).unwrap();
        std::os::unix::fs::symlink("..data/config", dir.path().join("config")).unwrap();

        let mut watch = FileWatch::new(vec![dir.path().join("config")]);
        assert_eq!(watch.poll(), Some(Ok(vec![b"a: 1".to_vec()])));
        assert_eq!(watch.poll(), None);
        // The kubelet's atomic update: a new ..data link renamed over the old one.
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&v2, &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        assert_eq!(watch.poll(), Some(Ok(vec![b"a: 2".to_vec()])));
        std::fs::remove_file(&data).unwrap();
        assert!(matches!(watch.poll(), Some(Err(e)) if e.contains("cannot read")));
    }
}
