//! The plugin's exit codes (documented in docs/proxy-status.md and docs/explain.md).

/// Success, everything in order.
pub const OK: u8 = 0;
/// The command itself failed (unreachable server, missing permission, bad input file, ...).
pub const FAILED: u8 = 1;
/// The command worked and found a problem (a proxy that is not synced, a request that would fail).
pub const PROBLEM: u8 = 2;
/// Bad flags or arguments (`EX_USAGE` of sysexits.h), so that a usage error is never read as
/// [`PROBLEM`].
pub const USAGE: u8 = 64;
