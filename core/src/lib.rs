//! mesh-core: the one contract shared by mesh's binaries.
//!
//! The webhook writes the `istio-init` arguments with [`capture::CaptureConfig`], `mesh-init` parses them
//! with it, and `kubectl mesh explain` reads a pod's capture rules back with it. Ports, the proxy identity
//! and Istio's annotation and label names live in [`ports`] and [`names`]; the
//! `sidecar.istio.io/status` annotation lives in [`status`]; label selectors, evaluated as the API server
//! does, in [`selector`]. Everything here is pure: no I/O, no runtime.

pub mod capture;
pub mod documents;
pub mod drift;
pub mod duration;
pub mod inject;
pub mod names;
pub mod ports;
pub mod selector;
pub mod status;

pub use capture::{CaptureConfig, CaptureError, Cidr, CidrList, InterceptionMode, PortList};
pub use status::{SidecarStatus, StatusError};
