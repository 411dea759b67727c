//! mesh-init library.
