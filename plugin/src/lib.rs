//! kubectl-mesh: `kubectl mesh proxy-status`, `kubectl mesh explain` and `kubectl mesh inject`.
//!
//! Commands fetch what they need (API server, istiod, Envoy), then call pure functions that build a
//! model and render it to a `String`; nothing below `run` prints.

pub mod check_inject;
pub mod cli;
pub mod cluster;
pub mod completion;
pub mod config_dump;
pub mod exit;
pub mod explain;
pub mod inject;
pub mod injector;
pub mod proxy_status;
pub mod schema;

pub use cli::{Cli, main_with, run};
