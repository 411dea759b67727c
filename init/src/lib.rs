//! mesh-init: the init container that programs istio-iptables-compatible traffic capture.
//!
//! The pure core is [`rules`]: [`CaptureConfig`](mesh_core::capture::CaptureConfig) plus the pod's
//! [`Facts`](rules::Facts) become iptables-restore text or an nft transaction. The shell
//! ([`backend`], [`route`]) applies it through a [`Runner`](command::Runner) (real processes, or a
//! recording for tests), atomically and idempotently; [`validation`] checks that capture works.

pub mod backend;
pub mod command;
pub mod facts;
pub mod route;
pub mod rules;
pub mod run;
pub mod validation;
