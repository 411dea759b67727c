//! An IP range as Envoy writes it (`address_prefix`, `prefix_len`), used by filter chain matches
//! and RBAC principals and permissions.

use serde::{Deserialize, Serialize};

use super::number::opt_u32;

/// An IP range.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CidrRange {
    /// The address part.
    pub address_prefix: String,
    /// The prefix length (0 when absent, as in protobuf).
    #[serde(deserialize_with = "opt_u32")]
    pub prefix_len: Option<u32>,
}

impl CidrRange {
    /// The range as `address/len`.
    pub fn display(&self) -> String {
        format!("{}/{}", self.address_prefix, self.prefix_len.unwrap_or(0))
    }

    /// Whether `ip` lies in the range; `None` when the range does not parse.
    pub fn contains(&self, ip: std::net::IpAddr) -> Option<bool> {
        let base: std::net::IpAddr = self.address_prefix.parse().ok()?;
        let len = self.prefix_len.unwrap_or(0);
        Some(match (base, ip) {
            (std::net::IpAddr::V4(b), std::net::IpAddr::V4(i)) => {
                let len = len.min(32);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                (u32::from(b) & mask) == (u32::from(i) & mask)
            }
            (std::net::IpAddr::V6(b), std::net::IpAddr::V6(i)) => {
                let len = len.min(128);
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                (u128::from(b) & mask) == (u128::from(i) & mask)
            }
            _ => false,
        })
    }
}
