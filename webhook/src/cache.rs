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
//! Bounded by the bytes the entries hold (allocated key and answer plus bookkeeping); the oldest
//! entries go first. Pure, no I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::admission::{Member, Object, ReviewRequest, Verdict};
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

/// What a review's answer depends on besides the config, as bytes compared for equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Box<[u8]>);

impl Key {
    /// The key of `request` arriving on the path for `cluster`/`network`, with the nodes' native
    /// sidecar support: the object's text without `metadata.managedFields` (as
    /// [`crate::admission::Object`] holds it) and each other input, every part tagged and
    /// length-prefixed so that different inputs never give the same bytes; objects written the same
    /// give the same bytes.
    pub fn new(request: &ReviewRequest<'_>, cluster: Option<&str>, network: Option<&str>, native: bool) -> Key {
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
                        Member::Raw(raw) => push_tagged(&mut key, b'r', raw.get()),
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
        Key(key.into_boxed_slice())
    }

    fn size(&self) -> usize {
        self.0.len()
    }
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

/// The cache: at most `max_bytes` of keys and answers; an entry larger than an eighth of that is
/// not kept.
#[derive(Debug)]
pub struct ReviewCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Arc<Key>, Arc<Decided>, foldhash::fast::RandomState>,
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

    /// The answer decided for `key`, if it is still kept.
    pub fn get(&self, key: &Key) -> Option<Arc<Decided>> {
        if !self.enabled() {
            return None;
        }
        self.lock().entries.get(key).cloned()
    }

    /// Keeps `decided` for `key`, evicting the oldest entries to stay within the size. Returns
    /// whether it was kept (it is not when it is too large or the cache is off).
    pub fn insert(&self, key: Key, decided: Arc<Decided>) -> bool {
        let size = key.size() + decided.size() + ENTRY_OVERHEAD;
        if !self.enabled() || size > self.max_bytes / 8 {
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
        inner.entries.insert(key.clone(), decided);
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
