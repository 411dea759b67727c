//! Emits the minimal RFC 6902 operations that turn the original pod into the injected one, area by
//! area (labels, annotations, each pod list), without diffing whole pods.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value};

/// Collects patch operations.
#[derive(Debug, Default)]
pub struct Ops(pub Vec<PatchOperation>);

/// `path/<key>`, the key escaped, in one allocation.
fn member(path: &str, key: &str) -> String {
    let mut out = String::with_capacity(path.len() + key.len() + 4);
    out.push_str(path);
    out.push('/');
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

fn pointer(path: String) -> PointerBuf {
    // Every path built here starts with `/` and is escaped, so parsing cannot fail; fall back to root.
    PointerBuf::parse(path).unwrap_or_default()
}

impl Ops {
    /// `add` (inserts into arrays, sets object members).
    pub fn add(&mut self, path: impl Into<String>, value: Value) {
        self.0.push(PatchOperation::Add(AddOperation { path: pointer(path.into()), value }));
    }

    /// `replace` an existing value.
    pub fn replace(&mut self, path: impl Into<String>, value: Value) {
        self.0.push(PatchOperation::Replace(ReplaceOperation { path: pointer(path.into()), value }));
    }

    /// `remove` an existing value.
    pub fn remove(&mut self, path: impl Into<String>) {
        self.0.push(PatchOperation::Remove(RemoveOperation { path: pointer(path.into()) }));
    }

    /// Sets `path` to `value`: nothing when equal, `replace` when present, `add` when absent.
    pub fn set(&mut self, path: impl Into<String>, original: Option<&Value>, value: Value) {
        match original {
            Some(o) if *o == value => {}
            Some(_) => self.replace(path, value),
            None => self.add(path, value),
        }
    }

    /// Member-by-member changes of a map (labels, annotations, a container's fields).
    pub fn map(&mut self, path: &str, original: Option<&Value>, target: Map<String, Value>) {
        let Some(Value::Object(orig)) = original else {
            self.set(path, original, Value::Object(target));
            return;
        };
        for key in orig.keys() {
            if !target.contains_key(key) {
                self.remove(member(path, key));
            }
        }
        for (key, value) in target {
            let original = orig.get(&key);
            if original != Some(&value) {
                self.set(member(path, &key), original, value);
            }
        }
    }

    /// Changes of a keyed list. When the original elements appear in the target in the same order,
    /// new elements are inserted (`-` at the end) and kept ones patched; otherwise the list is replaced.
    /// `field_level` says whether a kept element is patched field by field or replaced whole.
    pub fn list(
        &mut self,
        path: &str,
        original: Option<&Value>,
        target: Vec<Value>,
        field_level: &dyn Fn(&Value) -> bool,
    ) {
        let orig = match original {
            Some(Value::Array(orig)) => orig,
            None if target.is_empty() => return,
            _ => {
                self.set(path, original, Value::Array(target));
                return;
            }
        };
        fn key(v: &Value) -> Option<&str> {
            v.get("name").and_then(Value::as_str)
        }
        // For each target element, whether it is the next original one (kept in place).
        let kept: Option<Vec<bool>> = {
            let orig_keys: Vec<Option<&str>> = orig.iter().map(key).collect();
            let target_keys: Vec<Option<&str>> = target.iter().map(key).collect();
            is_subsequence(&orig_keys, &target_keys).then(|| {
                let mut i = 0;
                target_keys
                    .iter()
                    .map(|k| {
                        let hit = orig_keys.get(i) == Some(k);
                        i += usize::from(hit);
                        hit
                    })
                    .collect()
            })
        };
        let Some(kept) = kept else {
            self.set(path, original, Value::Array(target));
            return;
        };
        let mut i = 0;
        for (j, (item, kept)) in target.into_iter().zip(kept).enumerate() {
            if kept {
                let o = &orig[i];
                if *o != item {
                    let element = format!("{path}/{j}");
                    match (field_level(&item), item) {
                        (true, Value::Object(fields)) => self.map(&element, Some(o), fields),
                        (_, item) => self.replace(&element, item),
                    }
                }
                i += 1;
            } else {
                let element = if i == orig.len() { format!("{path}/-") } else { format!("{path}/{j}") };
                self.add(&element, item);
            }
        }
    }
}

/// Whether every original key appears in the target keys, in order, and the original keys are
/// present and unique.
fn is_subsequence(orig: &[Option<&str>], target: &[Option<&str>]) -> bool {
    for (n, k) in orig.iter().enumerate() {
        if k.is_none() || orig[..n].contains(k) {
            return false;
        }
    }
    let mut t = target.iter();
    orig.iter().all(|o| t.any(|x| x == o))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply(doc: &Value, ops: Ops) -> Value {
        let mut doc = doc.clone();
        json_patch::patch(&mut doc, &ops.0).unwrap();
        doc
    }

    #[test]
    fn map_members_are_escaped_and_minimal() {
        let doc = json!({"a": {"x/y": "1", "keep": "k", "gone": "g"}});
        let target = json!({"x/y": "2", "keep": "k", "new~": "n"});
        let mut ops = Ops::default();
        ops.map("/a", doc.get("a"), target.as_object().unwrap().clone());
        let paths: Vec<String> = ops.0.iter().map(|o| o.path().to_string()).collect();
        assert_eq!(paths, ["/a/gone", "/a/x~1y", "/a/new~0"]);
        assert_eq!(apply(&doc, ops), json!({"a": target}));
    }

    #[test]
    fn list_inserts_and_appends_around_kept_elements() {
        let doc = json!({"l": [{"name": "b"}, {"name": "c", "v": 1}]});
        let target =
            vec![json!({"name": "a"}), json!({"name": "b"}), json!({"name": "c", "v": 2}), json!({"name": "d"})];
        let mut ops = Ops::default();
        ops.list("/l", doc.get("l"), target.clone(), &|_| true);
        let paths: Vec<String> = ops.0.iter().map(|o| o.path().to_string()).collect();
        assert_eq!(paths, ["/l/0", "/l/2/v", "/l/-"]);
        assert_eq!(apply(&doc, ops), json!({"l": target}));
    }

    #[test]
    fn reordered_list_is_replaced() {
        let doc = json!({"l": [{"name": "b"}, {"name": "a"}]});
        let target = vec![json!({"name": "a"}), json!({"name": "b"})];
        let mut ops = Ops::default();
        ops.list("/l", doc.get("l"), target.clone(), &|_| true);
        assert_eq!(apply(&doc, ops), json!({"l": target}));
    }
}
