//! mesh-webhook library.
