//! Answers to reviews already decided, so that a pod the webhook has seen is not injected again.
//!
//! The pods of a ReplicaSet (so of a Deployment), a ReplicationController or a non-indexed Job
//! reach the webhook as the same object: the API server calls mutating webhooks before it gives the
//! pod its name, uid and creation time, so every replica is `generateName` plus the template, and
//! only `managedFields` (which carry a timestamp) and the review's uid differ. A scale-up or a
//! rollout of a Deployment, the bursts the webhook has to absorb, is therefore mostly the same
//! review again. (StatefulSet pods have their own names and pod-name labels, DaemonSet pods their
//! own node affinity, indexed Job pods their index: those are all misses.) Injection is a pure function of the object
//! without `managedFields`, the namespace, the `/inject/cluster/<c>/net/<n>` path, whether the nodes
//! support native sidecars, and the config; the key holds all of them but the config (each config
//! gets its own cache, see [`crate::server::AppState::set_config`]) and is compared byte for byte,
//! so a hit is exactly the answer injection would give. The answer is kept without the review's uid
//! and apiVersion, which the response echoes per review.
//!
//! One part of a pod differs between replicas all the same: before mutating webhooks run, the API
//! server's ServiceAccount plugin gives every pod a projected volume with a generated name
//! (`kube-api-access-` and five random characters) and mounts it in every container. The key holds
//! that name as a placeholder ([`Key::new`]), everything else (the volume's sources, its position,
//! every mount's position) as it is; a hit is re-bound to the review's own name: an answer that
//! mentions the name is kept split at each mention and joined with the name of the review it
//! answers. Injection treats the name as an opaque string (it only compares it with other names),
//! so this is again exactly the answer injection would give, which a property test checks against
//! fresh injections over random names, volume positions and mounts.
//!
//! Bounded by the bytes the entries hold (allocated key and answer plus bookkeeping); the oldest
//! entries go first. Pure, no I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::admission::{EncodedPatch, Member, Object, ReviewRequest, Verdict};
use crate::metrics::Outcome;

/// Default size of the cache: 32 MiB, a few thousand distinct pod templates.
pub const DEFAULT_BYTES: usize = 32 * 1024 * 1024;

/// Bookkeeping bytes counted per entry on top of its key and answer: the map slot and its share of
/// the map's spare capacity, the order queue's slot, the two `Arc` allocations and the allocator's
/// rounding of each allocation.
const ENTRY_OVERHEAD: usize = 256;

/// A decided review, without what each review echoes (uid, apiVersion).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// What happened.
    pub outcome: Outcome,
    /// The metrics label: skip reason, empty otherwise.
    pub reason: &'static str,
    /// The reason for the log line: skip reason or denial message.
    pub reason_text: String,
    /// The answer.
    pub verdict: Verdict,
}

impl Decided {
    fn size(&self) -> usize {
        // Allocated capacities: what the entry holds, not only the text it uses.
        let verdict = match &self.verdict {
            Verdict::Allow => 0,
            Verdict::Patch(patch) => patch.allocated(),
            Verdict::Deny(message) => message.capacity(),
        };
        verdict + self.reason_text.capacity()
    }
}

/// What a review's answer depends on besides the config, as bytes compared for equality, and the
/// name of the review's service-account token volume when the bytes hold it as a placeholder.
#[derive(Debug, Clone)]
pub struct Key {
    bytes: Box<[u8]>,
    token: Option<Box<str>>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

/// Prefix of the API server's generated service-account token volume names
/// (`kube-api-access-` and five characters of `[a-z0-9]`).
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// What stands for the token volume's name in a key: the prefix and five 0xFF bytes, which UTF-8
/// text (every review body) never holds, so a key with it never equals a key without.
const TOKEN_PLACEHOLDER: &[u8] = b"kube-api-access-\xff\xff\xff\xff\xff";

impl Key {
    /// The key of `request` arriving on the path for `cluster`/`network`, with the nodes' native
    /// sidecar support: the object's text without `metadata.managedFields` (as
    /// [`crate::admission::Object`] holds it) and each other input, every part tagged and
    /// length-prefixed so that different inputs never give the same bytes; objects written the same
    /// give the same bytes. The name of the service-account token volume ([`token_volume`]) is
    /// written as a placeholder, so replicas that differ only by that name share a key.
    pub fn new(request: &ReviewRequest<'_>, cluster: Option<&str>, network: Option<&str>, native: bool) -> Key {
        let token = token_volume(&request.object);
        // Most pods without managedFields are a few KiB.
        let mut key = Vec::with_capacity(4096);
        key.push(u8::from(native));
        for value in [Some(request.namespace.as_str()), cluster, network] {
            match value {
                None => key.push(0),
                Some(value) => push_tagged(&mut key, 1, value),
            }
        }
        match &request.object {
            Object::Other(value) => push_tagged(&mut key, b'O', &value.to_string()),
            Object::Members(members) => {
                key.push(b'M');
                push_len(&mut key, members.len());
                for (name, member) in members {
                    push_text(&mut key, name);
                    match member {
                        Member::Raw(raw) => match &token {
                            // Only `spec` holds the name (see `token_volume`).
                            Some(token) if name == "spec" => push_replaced(&mut key, b'r', raw.get(), token),
                            _ => push_tagged(&mut key, b'r', raw.get()),
                        },
                        Member::Value(value) => push_tagged(&mut key, b'v', &value.to_string()),
                        Member::Metadata(fields) => {
                            key.push(b'm');
                            push_len(&mut key, fields.len());
                            for (field, raw) in fields {
                                push_text(&mut key, field);
                                push_text(&mut key, raw.get());
                            }
                        }
                    }
                }
            }
        }
        // Shrunk to its length: the key is charged what it holds (a few KiB reserved for a
        // 100-byte key would make the cache's bound a lie for small objects).
        Key { bytes: key.into_boxed_slice(), token: token.map(String::into_boxed_str) }
    }

    /// The name of the review's service-account token volume, when the key holds a placeholder
    /// for it.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn size(&self) -> usize {
        self.bytes.len() + self.token.as_ref().map_or(0, |t| t.len())
    }
}

/// The name of the API server's projected service-account token volume in `object`, when the
/// name can stand for itself in the key: exactly one volume of `spec.volumes` is called
/// `kube-api-access-<5 of [a-z0-9]>` and is `projected`, and the name's every occurrence in the
/// object's text is that volume's name or the name of a `volumeMounts` entry of a container, init
/// container or ephemeral container (each written without escapes). Anything else (another mention
/// of the name anywhere, a second such volume, a spec that does not read) keeps the name in the key.
pub fn token_volume(object: &Object<'_>) -> Option<String> {
    let Object::Members(members) = object else { return None };
    let mut specs = members.iter().filter(|(name, _)| name == "spec");
    let (Some((_, Member::Raw(spec))), None) = (specs.next(), specs.next()) else { return None };
    let spec = spec.get();
    let start = spec.find(TOKEN_VOLUME_PREFIX)?;
    let name = spec.get(start..start + TOKEN_PLACEHOLDER.len())?;
    let suffix = &name.as_bytes()[TOKEN_VOLUME_PREFIX.len()..];
    if !suffix.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return None;
    }
    let parsed: SpecNames<'_> = serde_json::from_str(spec).ok()?;
    let mut named = parsed.volumes.iter().flatten().filter(|v| v.name == Some(name));
    match (named.next(), named.next()) {
        (Some(volume), None) if volume.projected.is_some() => {}
        _ => return None,
    }
    let mounts = [parsed.containers, parsed.init_containers, parsed.ephemeral_containers]
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|c| c.volume_mounts.into_iter().flatten())
        .filter(|m| m.name == Some(name))
        .count();
    let mentions = |text: &str| text.matches(name).count();
    let mentioned: usize = members
        .iter()
        .map(|(member, value)| {
            mentions(member)
                + match value {
                    Member::Raw(raw) => mentions(raw.get()),
                    Member::Value(value) => mentions(&value.to_string()),
                    Member::Metadata(fields) => fields.iter().map(|(f, raw)| mentions(f) + mentions(raw.get())).sum(),
                }
        })
        .sum();
    (mentioned == 1 + mounts).then(|| name.to_string())
}

/// The names [`token_volume`] reads from a pod's spec; every other field is skipped unbuilt.
#[derive(serde::Deserialize)]
struct SpecNames<'a> {
    #[serde(borrow, default)]
    volumes: Option<Vec<VolumeNames<'a>>>,
    #[serde(borrow, default)]
    containers: Option<Vec<ContainerMounts<'a>>>,
    #[serde(borrow, default, rename = "initContainers")]
    init_containers: Option<Vec<ContainerMounts<'a>>>,
    #[serde(borrow, default, rename = "ephemeralContainers")]
    ephemeral_containers: Option<Vec<ContainerMounts<'a>>>,
}

#[derive(serde::Deserialize)]
struct VolumeNames<'a> {
    #[serde(borrow, default)]
    name: Option<&'a str>,
    #[serde(default)]
    projected: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ContainerMounts<'a> {
    #[serde(borrow, default, rename = "volumeMounts")]
    volume_mounts: Option<Vec<MountName<'a>>>,
}

#[derive(serde::Deserialize)]
struct MountName<'a> {
    #[serde(borrow, default)]
    name: Option<&'a str>,
}

/// `text` tagged and length-prefixed, with every occurrence of `token` written as the placeholder
/// (same length, so the length is the text's).
fn push_replaced(key: &mut Vec<u8>, tag: u8, text: &str, token: &str) {
    key.push(tag);
    push_len(key, text.len());
    let mut rest = text;
    while let Some(at) = rest.find(token) {
        key.extend_from_slice(&rest.as_bytes()[..at]);
        key.extend_from_slice(TOKEN_PLACEHOLDER);
        rest = &rest[at + token.len()..];
    }
    key.extend_from_slice(rest.as_bytes());
}

fn push_len(key: &mut Vec<u8>, len: usize) {
    key.extend_from_slice(&(len as u64).to_le_bytes());
}

fn push_text(key: &mut Vec<u8>, text: &str) {
    push_len(key, text.len());
    key.extend_from_slice(text.as_bytes());
}

fn push_tagged(key: &mut Vec<u8>, tag: u8, text: &str) {
    key.push(tag);
    push_text(key, text);
}

/// A kept answer: as decided, or, when it mentions the token volume of the review it was decided
/// for, its JSON Patch text split at each mention.
#[derive(Debug)]
enum Entry {
    /// The answer for every review of the key.
    Fixed(Arc<Decided>),
    /// An injection whose patch names the token volume: the outcome and the patch text between
    /// the mentions, joined with each review's own name.
    Bound { decided: Arc<Decided>, pieces: Vec<String> },
}

impl Entry {
    /// The entry for `decided`, decided for a review whose token volume is `token`; `None` when
    /// the answer cannot be re-bound (a denial or skip reason that names the volume).
    fn new(decided: Arc<Decided>, token: Option<&str>) -> Option<Entry> {
        let Some(token) = token else { return Some(Entry::Fixed(decided)) };
        if decided.reason_text.contains(token) || matches!(&decided.verdict, Verdict::Deny(m) if m.contains(token)) {
            return None;
        }
        let Verdict::Patch(patch) = &decided.verdict else { return Some(Entry::Fixed(decided)) };
        let text = patch.json().ok()?;
        if !text.contains(token) {
            return Some(Entry::Fixed(decided));
        }
        let pieces = text.split(token).map(str::to_string).collect();
        Some(Entry::Bound { decided, pieces })
    }

    /// The answer for a review whose token volume is `token`.
    fn answer(&self, token: Option<&str>) -> Arc<Decided> {
        match (self, token) {
            (Entry::Fixed(decided), _) => decided.clone(),
            (Entry::Bound { decided, pieces }, Some(token)) => {
                let verdict = Verdict::Patch(EncodedPatch::from_json(pieces.join(token).as_bytes()));
                Arc::new(Decided { verdict, ..Decided::clone(decided) })
            }
            // A key with a placeholder always comes with its name; kept for completeness.
            (Entry::Bound { decided, .. }, None) => decided.clone(),
        }
    }

    fn size(&self) -> usize {
        match self {
            Entry::Fixed(decided) => decided.size(),
            Entry::Bound { decided, pieces } => {
                decided.size()
                    + pieces.capacity() * size_of::<String>()
                    + pieces.iter().map(String::capacity).sum::<usize>()
            }
        }
    }
}

/// The cache: at most `max_bytes` of keys and answers; an entry larger than an eighth of that is
/// not kept.
#[derive(Debug)]
pub struct ReviewCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Arc<Key>, Entry, foldhash::fast::RandomState>,
    order: VecDeque<Arc<Key>>,
    bytes: usize,
}

impl ReviewCache {
    /// An empty cache of at most `max_bytes`; 0 keeps nothing.
    pub fn new(max_bytes: usize) -> Self {
        ReviewCache { max_bytes, inner: Mutex::new(Inner::default()) }
    }

    /// Whether the cache keeps anything at all.
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The answer decided for `key`, if it is still kept, bound to the key's token volume name.
    pub fn get(&self, key: &Key) -> Option<Arc<Decided>> {
        if !self.enabled() {
            return None;
        }
        self.lock().entries.get(key).map(|entry| entry.answer(key.token()))
    }

    /// Keeps `decided` (the answer to the review of `key`) for `key`, evicting the oldest entries to
    /// stay within the size. Returns whether it was kept (it is not when it is too large, the cache
    /// is off, or the answer names the token volume where it cannot be re-bound).
    pub fn insert(&self, key: Key, decided: Arc<Decided>) -> bool {
        if !self.enabled() {
            return false;
        }
        let Some(entry) = Entry::new(decided, key.token()) else { return false };
        let size = key.size() + entry.size() + ENTRY_OVERHEAD;
        if size > self.max_bytes / 8 {
            return false;
        }
        let key = Arc::new(key);
        let mut inner = self.lock();
        if inner.entries.contains_key(&key) {
            return true;
        }
        while inner.bytes + size > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= oldest.size() + gone.size() + ENTRY_OVERHEAD;
            }
        }
        inner.entries.insert(key.clone(), entry);
        inner.order.push_back(key);
        inner.bytes += size;
        true
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted for the entries kept.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent between statements; a panic elsewhere cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::parse_review;
    use serde_json::json;

    fn review(uid: &str, object: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "namespace": "foo", "object": object}}))
        .unwrap()
    }

    fn key_of(body: &[u8]) -> Key {
        Key::new(&parse_review(body).unwrap(), None, None, true)
    }

    fn decided(value: &str) -> Arc<Decided> {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels/x", "value": value}])).unwrap();
        Arc::new(Decided {
            outcome: Outcome::Injected,
            reason: "",
            reason_text: String::new(),
            verdict: Verdict::patch(&patch).unwrap(),
        })
    }

    fn pod(managed_time: &str, image: &str) -> serde_json::Value {
        json!({"metadata": {"generateName": "web-", "managedFields": [{"manager": "kube-controller-manager",
            "time": managed_time}], "labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": image}]}})
    }

    #[test]
    fn replicas_share_a_key_whatever_their_uid_and_managed_fields() {
        let a = key_of(&review("u1", pod("2026-11-21T14:22:34Z", "nginx")));
        let b = key_of(&review("u2", pod("2026-11-21T14:29:01Z", "nginx")));
        assert_eq!(a, b);
        let mut no_managed = pod("", "nginx");
        no_managed["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(a, key_of(&review("u3", no_managed)), "managedFields never matter");
    }

    #[test]
    fn anything_injection_reads_changes_the_key() {
        let body = review("u1", pod("t", "nginx"));
        let request = parse_review(&body).unwrap();
        let base = Key::new(&request, None, None, true);
        assert_ne!(base, key_of(&review("u1", pod("t", "nginx:2"))), "the object");
        assert_ne!(base, Key::new(&request, None, None, false), "native sidecar support");
        assert_ne!(base, Key::new(&request, Some("c1"), None, true), "the cluster");
        assert_ne!(base, Key::new(&request, None, Some("n1"), true), "the network");
        assert_ne!(Key::new(&request, Some("a"), Some("b"), true), Key::new(&request, Some("ab"), None, true));
        assert_ne!(Key::new(&request, Some(""), None, true), Key::new(&request, None, None, true));
        let other_ns = String::from_utf8(body).unwrap().replace("\"namespace\":\"foo\"", "\"namespace\":\"bar\"");
        assert_ne!(base, key_of(other_ns.as_bytes()), "the namespace");
    }

    #[test]
    fn hits_what_was_inserted_and_evicts_the_oldest() {
        let cache = ReviewCache::new(64 * 1024);
        let keys: Vec<Key> =
            (0..40).map(|i| key_of(&review("u", pod("t", &format!("image-{i}-{}", "x".repeat(300)))))).collect();
        assert!(cache.get(&keys[0]).is_none());
        assert!(cache.insert(keys[0].clone(), decided("AAAA")));
        assert_eq!(cache.get(&keys[0]).unwrap(), decided("AAAA"));
        for key in &keys[1..] {
            assert!(cache.insert(key.clone(), decided(&"B".repeat(1000))));
            assert!(cache.bytes() <= 64 * 1024, "{} bytes kept", cache.bytes());
        }
        assert!(cache.get(&keys[0]).is_none(), "the oldest entry was evicted");
        assert!(cache.get(&keys[39]).is_some(), "the newest entry is kept");
        assert!(cache.len() < 40 && cache.len() > 10, "{} entries", cache.len());
    }

    #[test]
    fn large_answers_and_a_zero_size_are_not_kept() {
        let key = key_of(&review("u", pod("t", "nginx")));
        let cache = ReviewCache::new(16 * 1024);
        assert!(!cache.insert(key.clone(), decided(&"A".repeat(4096))), "over an eighth of the size");
        assert!(cache.is_empty());
        let off = ReviewCache::new(0);
        assert!(!off.enabled());
        assert!(!off.insert(key.clone(), decided("A")));
        assert!(off.get(&key).is_none());
    }

    #[test]
    fn inserting_a_key_twice_keeps_one_entry() {
        let cache = ReviewCache::new(1024 * 1024);
        let key = key_of(&review("u", pod("t", "nginx")));
        assert!(cache.insert(key.clone(), decided("A")));
        let bytes = cache.bytes();
        assert!(cache.insert(key.clone(), decided("A")));
        assert_eq!((cache.len(), cache.bytes()), (1, bytes));
    }
}
