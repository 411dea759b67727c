//! mesh-tests: the integration harness. Real Envoy processes, the tools that `tests/run` installs,
//! and the shared conformance data. Tests that need a tool fail with an install hint; they never skip.

pub mod envoy;
pub mod tools;

pub use envoy::Envoy;
pub use tools::{Tool, shared_dir};
