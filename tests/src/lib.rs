//! mesh-tests: the integration harness. Real Envoy processes, the tools that `tests/run` installs,
//! and the shared conformance data. Tests that need a tool fail with an install hint; they never skip.

pub mod apiserver;
pub mod envoy;
pub mod inject_cases;
pub mod netns;
pub mod sidecar;
pub mod tools;
pub mod xds;

pub use envoy::Envoy;
pub use tools::{Tool, shared_dir};
