//! The in-memory object store: objects by (group, resource, namespace, name), a global resourceVersion,
//! and an event log that watches replay from any resourceVersion.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::meta;
use super::resource::ResourceType;
use super::selector::Selectors;
use super::status::ApiError;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as recorded in the log.
#[derive(Debug)]
pub struct Event {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// Storage group of the object.
    pub group: String,
    /// Storage resource (plural) of the object.
    pub plural: String,
    /// Added, modified or deleted.
    pub kind: EventType,
    /// The object after the change (for deletions: its last state).
    pub object: Value,
    /// The object before a modification (to turn selector transitions into ADDED/DELETED).
    pub old: Option<Value>,
}

/// Storage key of an object.
type Key = (String, String, String, String);

/// Everything the server stores.
#[derive(Debug, Default)]
pub struct State {
    /// Registered resource types (every served version).
    pub types: Vec<ResourceType>,
    objects: BTreeMap<Key, Stored>,
    rv: u64,
    /// The resourceVersion up to which history is dropped (etcd's compaction): older `continue`
    /// tokens are answered 410.
    compacted: u64,
    log: Vec<Arc<Event>>,
}

/// A stored object and its encoding as a list item, made when it is written, as etcd holds an
/// object's bytes (a list is then written from those bytes, never rebuilt as one document).
#[derive(Debug)]
struct Stored {
    value: Value,
    /// Its key in list order ([`list_key`]).
    key: String,
    /// The apiVersion it was encoded for, and the bytes.
    item: (String, Arc<[u8]>),
}

impl Stored {
    fn new(rt: &ResourceType, value: Value) -> Stored {
        let item = (rt.api_version(), encode_item(rt, &value));
        Stored { key: list_key(&value), value, item }
    }

    /// The object as a list item of `rt`, encoded (another version of a custom resource is encoded
    /// on the spot).
    fn encoded(&self, rt: &ResourceType) -> Arc<[u8]> {
        if self.item.0 == rt.api_version() { self.item.1.clone() } else { encode_item(rt, &self.value) }
    }
}

/// The object encoded as an item of a list of `rt` ([`list_item`]).
pub fn encode_item(rt: &ResourceType, obj: &Value) -> Arc<[u8]> {
    serde_json::to_vec(&list_item(rt, obj)).unwrap_or_default().into()
}

/// One page of a list in etcd's key order (`<namespace>/<name>`).
#[derive(Debug)]
pub struct ListPage<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// The store's resourceVersion.
    pub rv: u64,
    /// Items after this page (0: the list is complete).
    pub remaining: usize,
    /// The key of the page's last item, when more items follow (where the next page starts).
    pub last: Option<String>,
}

/// An object's key in list order: `<namespace>/<name>`, or `<name>` for cluster-scoped objects (the
/// order of etcd's `/registry/<resource>/...` keys).
pub fn list_key(obj: &Value) -> String {
    let name = name_of(obj);
    match namespace_of(obj) {
        "" => name.to_string(),
        ns => format!("{ns}/{name}"),
    }
}

/// The store shared by the HTTP handlers and the test's handle.
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}

/// The object's `metadata` as a mutable map (created when missing or not an object).
fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Value::Object(map) = obj else { unreachable!("just made an object") };
    let md = map.entry("metadata").or_insert_with(|| json!({}));
    if !md.is_object() {
        *md = json!({});
    }
    match md {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The parts of an object that count for `metadata.generation` (everything but metadata and status).
fn spec_part(obj: &Value) -> Value {
    match obj {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "kind" | "apiVersion"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

const METADATA_ORDER: [&str; 13] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
];

fn sort_recursively(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in entries {
                sort_recursively(&mut val);
                m.insert(k, val);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sort_recursively),
        _ => {}
    }
}

/// The object as the server would send it for type `rt`: its `apiVersion`, and keys in the real order
/// (typed objects: kind, apiVersion, metadata, spec, status; custom resources: sorted, like Go maps).
pub fn present(rt: &ResourceType, obj: &Value) -> Value {
    present_owned(rt, obj.clone())
}

/// [`present`] for an object the caller no longer needs (no copy).
pub fn present_owned(rt: &ResourceType, mut obj: Value) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    if rt.custom {
        sort_recursively(&mut obj);
        return obj;
    }
    let Value::Object(mut m) = obj else { return obj };
    let mut out = Map::new();
    for k in ["kind", "apiVersion"] {
        if let Some(v) = m.shift_remove(k) {
            out.insert(k.into(), v);
        }
    }
    if let Some(Value::Object(mut md)) = m.shift_remove("metadata") {
        let mut ordered = Map::new();
        for k in METADATA_ORDER {
            if let Some(v) = md.shift_remove(k) {
                ordered.insert(k.into(), v);
            }
        }
        ordered.extend(md);
        out.insert("metadata".into(), Value::Object(ordered));
    }
    let status = m.shift_remove("status");
    out.extend(m);
    if let Some(s) = status {
        out.insert("status".into(), s);
    }
    Value::Object(out)
}

/// The object as an item of a list of `rt`: [`present`], without `kind` and `apiVersion` for typed
/// lists (the real server drops them from typed list items; custom resources keep them).
pub fn list_item(rt: &ResourceType, obj: &Value) -> Value {
    let mut p = present(rt, obj);
    if !rt.custom
        && let Value::Object(m) = &mut p
    {
        m.shift_remove("kind");
        m.shift_remove("apiVersion");
    }
    p
}

/// Where a list or watch looks: a namespace (or all) plus selectors.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this namespace, or all namespaces.
    pub namespace: Option<String>,
    /// Label and field selectors.
    pub selectors: Selectors,
}

impl Filter {
    /// Whether the object is in scope and selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| namespace_of(obj) == ns) && self.selectors.matches(obj)
    }
}

/// What a new watch starts from: the events to send first, the resourceVersion they bring the watcher
/// to, and the live changes after that.
#[derive(Debug)]
pub struct WatchFeed {
    /// Synthetic ADDED events or replayed log entries.
    pub initial: Vec<Arc<Event>>,
    /// The store's resourceVersion when the watch started.
    pub rv: u64,
    /// Changes from then on.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// How a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Synthetic ADDED events for the current objects, then changes (no resourceVersion, or "0").
    Current,
    /// Every change after this resourceVersion.
    After(u64),
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(16_384);
        Store { state: Mutex::new(State { rv: 100, ..State::default() }), events }
    }

    /// Locks the state (a poisoned lock is recovered: the state is plain data).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a resource type (replacing the same group/version/resource).
    pub fn register(&self, rt: ResourceType) {
        let mut st = self.lock();
        st.types.retain(|t| !(t.group == rt.group && t.version == rt.version && t.plural == rt.plural));
        st.types.push(rt);
    }

    /// The type served at group/version/plural.
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().types.iter().find(|t| t.group == group && t.version == version && t.plural == plural).cloned()
    }

    /// The registered types.
    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.clone()
    }

    /// The type for an object's `apiVersion` and `kind`.
    pub fn type_of(&self, obj: &Value) -> Result<ResourceType, ApiError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no kind \"{kind}\" is registered for version \"{api_version}\" (register its ResourceType first)"
                ))
            })
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Drops the history up to the current resourceVersion, as etcd's compaction does: a `continue`
    /// token issued before is answered 410 Expired.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.compacted = st.rv;
    }

    /// Whether a list snapshot at `rv` is gone.
    pub fn compacted(&self, rv: u64) -> bool {
        rv <= self.lock().compacted
    }

    fn key(rt: &ResourceType, ns: &str, name: &str) -> Key {
        (rt.group.clone(), rt.plural.clone(), if rt.namespaced { ns.to_string() } else { String::new() }, name.into())
    }

    fn record(&self, st: &mut State, rt: &ResourceType, kind: EventType, object: Value, old: Option<Value>) {
        let ev = Arc::new(Event { rv: st.rv, group: rt.group.clone(), plural: rt.plural.clone(), kind, object, old });
        st.log.push(ev.clone());
        // No receiver is fine: nobody is watching.
        let _ = self.events.send(ev);
    }

    fn bump(st: &mut State, obj: &mut Value) -> u64 {
        st.rv += 1;
        let rv = st.rv;
        metadata_mut(obj).insert("resourceVersion".into(), json!(rv.to_string()));
        rv
    }

    /// Gets one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(&Self::key(rt, ns, name))
            .map(|s| s.value.clone())
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Lists the objects of a type that match the filter, with the current resourceVersion.
    pub fn list(&self, rt: &ResourceType, filter: &Filter) -> (Vec<Value>, u64) {
        let page = self.list_page(rt, filter, None, None, |s| s.value.clone());
        (page.items, page.rv)
    }

    /// [`Store::list`] as encoded list items (encoded once per object version), a page at a time:
    /// the items after the key `after`, at most `limit` of them.
    pub fn list_encoded(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> ListPage<Arc<[u8]>> {
        self.list_page(rt, filter, after, limit, |s| s.encoded(rt))
    }

    /// [`Store::list_encoded`] as objects.
    pub fn list_values(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> ListPage<Value> {
        self.list_page(rt, filter, after, limit, |s| s.value.clone())
    }

    fn list_page<T>(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        after: Option<&str>,
        limit: Option<usize>,
        item: impl Fn(&Stored) -> T,
    ) -> ListPage<T> {
        let st = self.lock();
        let (group, plural) = (rt.group.clone(), rt.plural.clone());
        let from = (group.clone(), plural.clone(), String::new(), String::new());
        let mut selected: Vec<&Stored> = st
            .objects
            .range(from..)
            .take_while(|((g, p, _, _), _)| *g == group && *p == plural)
            .map(|(_, s)| s)
            .filter(|s| after.is_none_or(|a| s.key.as_str() > a) && filter.matches(&s.value))
            .collect();
        // The map's (namespace, name) order is not the key order when a namespace is a prefix of
        // another ("a" and "a-b"): sort by the key itself.
        selected.sort_by(|a, b| a.key.cmp(&b.key));
        let take = limit.filter(|&l| l > 0).unwrap_or(usize::MAX).min(selected.len());
        let remaining = selected.len() - take;
        let last =
            if remaining > 0 { take.checked_sub(1).and_then(|i| selected.get(i)).map(|s| s.key.clone()) } else { None };
        let items = selected.iter().take(take).map(|s| item(s)).collect();
        ListPage { items, rv: st.rv, remaining, last }
    }

    fn namespace_exists(st: &State, ns: &str) -> bool {
        let served = st.types.iter().any(|t| t.group.is_empty() && t.plural == "namespaces");
        !served || st.objects.contains_key(&(String::new(), "namespaces".into(), String::new(), ns.into()))
    }

    /// Fills in what the server sets on creation: name from generateName, namespace, uid, timestamps,
    /// generation, resourceVersion, and the namespace defaults.
    fn prepare_new(st: &mut State, rt: &ResourceType, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
        if let Value::Object(m) = obj {
            m.insert("apiVersion".into(), json!(rt.api_version()));
            m.insert("kind".into(), json!(rt.kind));
        } else {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        let md = metadata_mut(obj);
        let mut name = md.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() {
            let prefix = md.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", meta::name_suffix());
            md.insert("name".into(), json!(name));
        }
        if rt.namespaced {
            md.insert("namespace".into(), json!(ns));
        } else {
            md.shift_remove("namespace");
        }
        md.insert("uid".into(), json!(meta::uid()));
        md.insert("creationTimestamp".into(), json!(meta::rfc3339(meta::now_secs())));
        if rt.custom || rt.plural == "pods" || rt.plural == "deployments" {
            md.insert("generation".into(), json!(1));
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let labels = md.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if let Value::Object(m) = obj {
                m.entry("spec").or_insert_with(|| json!({"finalizers": ["kubernetes"]}));
                m.entry("status").or_insert_with(|| json!({"phase": "Active"}));
            }
        }
        Self::bump(st, obj);
        Ok(())
    }

    /// Creates an object (POST): 409 when it exists, 404 when its namespace does not. With a status
    /// subresource the posted status is dropped (pods start `Pending`), as the real server does.
    pub fn create(&self, rt: &ResourceType, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        if rt.has_subresource("status")
            && let Value::Object(m) = &mut obj
        {
            m.shift_remove("status");
            if rt.group.is_empty() && rt.plural == "pods" {
                m.insert("status".into(), json!({"phase": "Pending", "qosClass": "BestEffort"}));
            }
        }
        self.insert_new(rt, ns, obj)
    }

    fn insert_new(&self, rt: &ResourceType, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        let mut st = self.lock();
        if rt.namespaced && !Self::namespace_exists(&st, ns) {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        let name = name_of(&obj).to_string();
        if !name.is_empty() && st.objects.contains_key(&Self::key(rt, ns, &name)) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        Self::prepare_new(&mut st, rt, ns, &mut obj)?;
        let key = Self::key(rt, ns, name_of(&obj));
        st.objects.insert(key, Stored::new(rt, obj.clone()));
        self.record(&mut st, rt, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    /// Replaces an object (PUT), or only its status (`status_only`). A stale resourceVersion is a 409.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let body_name = name_of(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let want_rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
        self.modify(rt, ns, name, status_only, |current| {
            if let Some(rv) = &want_rv {
                let have = current.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
                if !rv.is_empty() && rv != have {
                    return Err(ApiError::conflict(&rt.group, &rt.plural, name));
                }
            }
            *current = obj;
            Ok(())
        })
    }

    /// Applies `change` to the stored object atomically, keeping server-owned metadata, then records it.
    /// With a status subresource, a main-resource change keeps the old status and a status change keeps
    /// everything but the status.
    pub fn modify(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        status_only: bool,
        change: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let key = Self::key(rt, ns, name);
        let old = st
            .objects
            .get(&key)
            .map(|s| s.value.clone())
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let mut new = old.clone();
        change(&mut new)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        let mut merged = if status_only {
            let mut m = old.clone();
            if let (Value::Object(m), Some(s)) = (&mut m, new.get("status")) {
                m.insert("status".into(), s.clone());
            }
            m
        } else {
            if rt.has_subresource("status")
                && let Value::Object(n) = &mut new
            {
                match old.get("status") {
                    Some(s) => n.insert("status".into(), s.clone()),
                    None => n.shift_remove("status"),
                };
            }
            new
        };
        if let Value::Object(m) = &mut merged {
            m.insert("apiVersion".into(), old.get("apiVersion").cloned().unwrap_or(json!(rt.api_version())));
            m.insert("kind".into(), json!(rt.kind));
        }
        // Server-owned metadata survives any change.
        let old_md = old.get("metadata").cloned().unwrap_or(json!({}));
        {
            let md = metadata_mut(&mut merged);
            md.insert("name".into(), json!(name));
            if rt.namespaced {
                md.insert("namespace".into(), json!(ns));
            }
            for k in ["uid", "creationTimestamp", "generation", "deletionTimestamp"] {
                match old_md.get(k) {
                    Some(v) => md.insert(k.into(), v.clone()),
                    None => md.shift_remove(k),
                };
            }
        }
        if merged == old {
            return Ok(old);
        }
        if !status_only
            && spec_part(&merged) != spec_part(&old)
            && let Some(g) = old_md.get("generation").and_then(Value::as_i64)
        {
            metadata_mut(&mut merged).insert("generation".into(), json!(g + 1));
        }
        Self::bump(&mut st, &mut merged);
        st.objects.insert(key, Stored::new(rt, merged.clone()));
        self.record(&mut st, rt, EventType::Modified, merged.clone(), Some(old));
        Ok(merged)
    }

    /// Deletes an object (and, for a namespace, everything in it). Returns its last state.
    pub fn delete(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let key = Self::key(rt, ns, name);
        let mut obj =
            st.objects.remove(&key).map(|s| s.value).ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let inside: Vec<Key> = st.objects.keys().filter(|k| k.2 == name).cloned().collect();
            for k in inside {
                if let Some(mut child) = st.objects.remove(&k).map(|s| s.value)
                    && let Some(crt) = st.types.iter().find(|t| t.group == k.0 && t.plural == k.1).cloned()
                {
                    Self::bump(&mut st, &mut child);
                    self.record(&mut st, &crt, EventType::Deleted, child, None);
                }
            }
        }
        Self::bump(&mut st, &mut obj);
        self.record(&mut st, rt, EventType::Deleted, obj.clone(), None);
        Ok(obj)
    }

    /// Creates or replaces an object, as a test seeds it (no resourceVersion check; creates the namespace
    /// when the type is namespaced and it is missing).
    pub fn put(&self, rt: &ResourceType, mut obj: Value) -> Result<Value, ApiError> {
        let ns = namespace_of(&obj).to_string();
        if rt.namespaced && ns.is_empty() {
            return Err(ApiError::bad_request(format!("{} {:?} needs metadata.namespace", rt.kind, name_of(&obj))));
        }
        if rt.namespaced && !Self::namespace_exists(&self.lock(), &ns) {
            let ns_type = self.find_type("", "v1", "namespaces");
            if let Some(nt) = ns_type {
                self.create(&nt, "", json!({"metadata": {"name": ns}}))?;
            }
        }
        let name = name_of(&obj).to_string();
        let exists = self.lock().objects.contains_key(&Self::key(rt, &ns, &name));
        if !exists {
            return self.insert_new(rt, &ns, obj);
        }
        if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            md.shift_remove("resourceVersion");
        }
        let status = obj.get("status").cloned();
        let updated = self.modify(rt, &ns, &name, false, |cur| {
            *cur = obj;
            Ok(())
        })?;
        match status {
            Some(s) if rt.has_subresource("status") => self.modify(rt, &ns, &name, true, |cur| {
                if let Value::Object(m) = cur {
                    m.insert("status".into(), s);
                }
                Ok(())
            }),
            _ => Ok(updated),
        }
    }

    /// Starts a watch: the initial events (synthetic ADDED or the replayed log) and the live receiver.
    /// Both are taken under the lock, so no change is lost or duplicated.
    pub fn watch(&self, rt: &ResourceType, filter: &Filter, start: WatchStart) -> WatchFeed {
        let st = self.lock();
        let rx = self.events.subscribe();
        let initial = match start {
            WatchStart::Current => st
                .objects
                .iter()
                .filter(|((g, p, _, _), s)| *g == rt.group && *p == rt.plural && filter.matches(&s.value))
                .map(|(_, s)| {
                    Arc::new(Event {
                        rv: st.rv,
                        group: rt.group.clone(),
                        plural: rt.plural.clone(),
                        kind: EventType::Added,
                        object: s.value.clone(),
                        old: None,
                    })
                })
                .collect(),
            WatchStart::After(rv) => {
                if rv > st.rv {
                    Vec::new()
                } else {
                    let first = st.log.partition_point(|e| e.rv <= rv);
                    st.log[first..].iter().filter(|e| e.group == rt.group && e.plural == rt.plural).cloned().collect()
                }
            }
        };
        WatchFeed { initial, rv: st.rv, live: rx }
    }
}

/// Turns a change into what a watcher with this filter sees: objects entering the selection are ADDED,
/// leaving it DELETED, like the real watch cache.
pub fn visible(filter: &Filter, ev: &Event) -> Option<EventType> {
    let now = filter.matches(&ev.object);
    match (ev.kind, &ev.old) {
        (EventType::Modified, Some(old)) => match (filter.matches(old), now) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
        (k, _) => now.then_some(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> ResourceType {
        ResourceType::new("", "v1", "Pod", "pods", true).with_status()
    }

    #[test]
    fn create_update_conflict_delete() -> Result<(), ApiError> {
        let s = Store::new();
        let rt = pods();
        s.register(rt.clone());
        let created =
            s.create(&rt, "ns", json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"phase": "Running"}}))?;
        assert_eq!(created.pointer("/status/phase"), Some(&json!("Pending")));
        let rv1 = created.pointer("/metadata/resourceVersion").cloned();
        assert_eq!(s.create(&rt, "ns", json!({"metadata": {"name": "a"}})).err().map(|e| e.code), Some(409));
        let mut stale = created.clone();
        stale["spec"]["x"] = json!(2);
        let updated = s.update(&rt, "ns", "a", stale.clone(), false)?;
        assert_ne!(updated.pointer("/metadata/resourceVersion").cloned(), rv1);
        assert_eq!(updated.pointer("/metadata/generation"), Some(&json!(2)));
        assert_eq!(s.update(&rt, "ns", "a", stale, false).err().map(|e| e.code), Some(409));
        // Status is only changed through the status subresource.
        let with_status =
            s.update(&rt, "ns", "a", json!({"metadata": {}, "spec": {"x": 2}, "status": {"phase": "Running"}}), false)?;
        assert_eq!(with_status.pointer("/status/phase"), Some(&json!("Pending")));
        let st = s.update(&rt, "ns", "a", json!({"status": {"phase": "Running"}}), true)?;
        assert_eq!(st.pointer("/status/phase"), Some(&json!("Running")));
        assert_eq!(st.pointer("/spec/x"), Some(&json!(2)));
        s.delete(&rt, "ns", "a")?;
        assert_eq!(s.get(&rt, "ns", "a").err().map(|e| e.code), Some(404));
        Ok(())
    }

    #[test]
    fn watch_replays_after_resource_version() -> Result<(), ApiError> {
        let s = Store::new();
        let rt = pods();
        s.register(rt.clone());
        let a = s.create(&rt, "ns", json!({"metadata": {"name": "a"}}))?;
        let rv: u64 =
            a.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0").parse().unwrap_or(0);
        s.create(&rt, "ns", json!({"metadata": {"name": "b"}}))?;
        s.delete(&rt, "ns", "a")?;
        let feed = s.watch(&rt, &Filter::default(), WatchStart::After(rv));
        let kinds: Vec<_> = feed.initial.iter().map(|e| (e.kind, name_of(&e.object).to_string())).collect();
        assert_eq!(kinds, vec![(EventType::Added, "b".into()), (EventType::Deleted, "a".into())]);
        Ok(())
    }
}
