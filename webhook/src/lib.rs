//! mesh-webhook: the mutating admission webhook that injects the istio-proxy sidecar.
//!
//! The HTTP layer ([`server::router`]) translates AdmissionReviews to calls of the pure
//! `mesh_core::inject::Injector` and back ([`admission`]), keeping decided answers for the replicas
//! that follow ([`cache`]). Around it: TLS with hot certificate reload
//! ([`tls`], [`reload`]), the self-signed mode ([`selfsigned`]), native-sidecar detection from node
//! versions ([`nodes`]), metrics ([`metrics`]), the per-review log line ([`reviewlog`]), connection limits and draining ([`serve`]), and the
//! wiring from flags ([`cli`], [`run`](mod@run)).

pub mod admission;
pub mod cache;
pub mod cli;
pub mod logsink;
pub mod metrics;
pub mod nodes;
pub mod reload;
pub mod reviewlog;
pub mod run;
pub mod selfsigned;
pub mod serve;
pub mod server;
pub mod tls;

pub use cli::Args;
pub use run::run;
pub use server::{AppState, health_router, router};
