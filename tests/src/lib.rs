//! mesh-tests: the integration harness. Real Envoy processes, the tools that `tests/run` installs,
//! network namespaces, the webhook test helpers, and the shared conformance data. Tests that need a
//! tool fail with an install hint; they never skip. The test servers are crates of their own
//! (`testing/apiserver`, `testing/xds`), re-exported here under their old names.

pub use mesh_test_apiserver as apiserver;
pub use mesh_test_xds as xds;
pub mod envoy;
pub mod inject_cases;
pub mod netns;
pub mod sidecar;
pub mod support;
pub mod tools;

pub use envoy::Envoy;
pub use tools::{Tool, check_golden, repo_root, shared_dir};
