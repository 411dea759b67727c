//! mesh-test-data: where tests and benchmarks find their data.
//!
//! - [`repo_root`]: the repository root, whichever crate asks.
//! - [`shared_dir`] / [`shared_path`] / [`read_shared`]: the shared conformance data and fixtures,
//!   `$MESH_SHARED` or else `../shared` beside the repository. A missing directory or file is an
//!   error that names the path and says to set `MESH_SHARED`.
//! - [`check_golden`]: compare an output with a golden file, or rewrite the file when
//!   `UPDATE_GOLDEN` is set; a difference names the file and shows the first differing lines.

use std::fmt;
use std::path::{Path, PathBuf};

/// An error locating or reading test data. Its text names the path and what to do.
#[derive(Debug)]
pub struct DataError(String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

/// The repository root (two levels above this crate's directory, `testing/data`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("../.."))
}

/// The shared data directory: `$MESH_SHARED`, else `../shared` beside the repository.
pub fn shared_dir() -> Result<PathBuf, DataError> {
    shared_dir_from(std::env::var_os("MESH_SHARED").map(PathBuf::from))
}

fn shared_dir_from(env_value: Option<PathBuf>) -> Result<PathBuf, DataError> {
    let dir = env_value.unwrap_or_else(|| repo_root().join("../shared"));
    dir.canonicalize()
        .map_err(|e| DataError(format!("shared data not found at {}: {e} (set MESH_SHARED)", dir.display())))
}

/// A path inside the shared data directory; the file must exist.
pub fn shared_path(relative: &str) -> Result<PathBuf, DataError> {
    let path = shared_dir()?.join(relative);
    if path.exists() {
        Ok(path)
    } else {
        Err(DataError(format!("{} does not exist (set MESH_SHARED to the shared data directory)", path.display())))
    }
}

/// The bytes of a file inside the shared data directory.
pub fn read_shared(relative: &str) -> Result<Vec<u8>, DataError> {
    let path = shared_path(relative)?;
    std::fs::read(&path).map_err(|e| DataError(format!("reading {}: {e}", path.display())))
}

/// Whether goldens are being rewritten (`UPDATE_GOLDEN` is set).
pub fn updating_goldens() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compares `actual` with the golden file at `path`. With `UPDATE_GOLDEN` set, writes `actual` there
/// instead (creating directories). The error names the file, the line counts and the first
/// differences, and says how to regenerate.
pub fn check_golden(path: &Path, actual: &str) -> Result<(), DataError> {
    check_golden_with(path, actual, updating_goldens())
}

fn check_golden_with(path: &Path, actual: &str, update: bool) -> Result<(), DataError> {
    if update {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DataError(format!("creating {}: {e}", dir.display())))?;
        }
        return std::fs::write(path, actual).map_err(|e| DataError(format!("writing {}: {e}", path.display())));
    }
    let expected = std::fs::read_to_string(path)
        .map_err(|e| DataError(format!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display())))?;
    if expected == actual {
        return Ok(());
    }
    Err(DataError(format!(
        "{} differs from the output ({} vs {} lines); rerun with UPDATE_GOLDEN=1 and review the diff:\n{}",
        path.display(),
        expected.lines().count(),
        actual.lines().count(),
        first_differences(&expected, actual, 8).join("\n")
    )))
}

/// Up to `limit` differing lines between two texts, as `line N: - expected` / `line N: + actual`.
pub fn first_differences(expected: &str, actual: &str, limit: usize) -> Vec<String> {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = Vec::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x == y {
            continue;
        }
        if out.len() >= limit * 2 {
            out.push("...".to_string());
            break;
        }
        out.push(format!("line {}: - {}", i + 1, x.copied().unwrap_or("<none>")));
        out.push(format!("line {}: + {}", i + 1, y.copied().unwrap_or("<none>")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_holds_the_workspace_manifest() {
        let text = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("workspace Cargo.toml");
        assert!(text.contains("[workspace]"), "{}", repo_root().display());
    }

    #[test]
    fn a_missing_shared_dir_names_the_path_and_the_variable() {
        let err = shared_dir_from(Some(PathBuf::from("/nonexistent/shared"))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/shared") && err.contains("MESH_SHARED"), "{err}");
    }

    #[test]
    fn goldens_compare_update_and_report_differences() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/out.txt");
        let missing = check_golden_with(&path, "a\n", false).unwrap_err().to_string();
        assert!(missing.contains("UPDATE_GOLDEN=1"), "{missing}");
        check_golden_with(&path, "a\nb\n", true).expect("update writes");
        check_golden_with(&path, "a\nb\n", false).expect("same text matches");
        let err = check_golden_with(&path, "a\nc\n", false).unwrap_err().to_string();
        assert!(err.contains("line 2: - b") && err.contains("line 2: + c"), "{err}");
    }

    #[test]
    fn first_differences_stops_at_the_limit() {
        let d = first_differences("1\n2\n3\n", "x\ny\nz\n", 1);
        assert_eq!(d, vec!["line 1: - 1", "line 1: + x", "..."]);
    }
}
