//! Object metadata the server fills in: timestamps (RFC 3339, UTC), UIDs, generated names, ages.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-11-21T14:22:34Z` for the given Unix time (whole seconds, as the API server writes them).
pub fn rfc3339(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp to Unix seconds (fractions are dropped).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// A random version-4 UUID, like the real server's `metadata.uid`.
pub fn uid() -> String {
    let a = random_u64();
    let b = random_u64();
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Five random characters from the alphabet the real server uses for `generateName` suffixes.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random_u64();
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        out.push(char::from(ALPHABET[(n % ALPHABET.len() as u64) as usize]));
        n /= ALPHABET.len() as u64;
    }
    out
}

/// The age of an object as kubectl and the server's tables print it (`apimachinery` `HumanDuration`).
pub use kubectl_mesh::proxy_status::model::human_duration;

/// The age of an object whose `creationTimestamp` is `created` (`<unknown>` when it has none).
pub fn age(created: Option<&str>) -> String {
    match created.and_then(parse_rfc3339) {
        Some(t) => human_duration(Duration::from_secs(u64::try_from(now_secs() - t).unwrap_or(0))),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        let t = parse_rfc3339("2026-11-21T14:22:34Z");
        assert_eq!(t.map(rfc3339).as_deref(), Some("2026-11-21T14:22:34Z"));
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z").map(rfc3339).as_deref(), Some("2024-02-29T23:59:59Z"));
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn uids_are_v4_and_distinct() {
        let (a, b) = (uid(), uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn ages_follow_human_duration() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(human_duration(Duration::from_secs(3600 * 5 + 60 * 7)), "5h7m");
        assert_eq!(human_duration(Duration::from_secs(86_400 * 3)), "3d");
    }
}
