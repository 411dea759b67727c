//! What a v1.36 kube-apiserver does to a Pod when it reads one: decode the JSON into the Go type
//! `v1.Pod`, run its defaulters, and encode it again. The mutating webhook plugin does this after
//! every non-empty JSON patch (`webhook/mutating/dispatcher.go`: `jsonSerializer.Decode`, then
//! `ObjectDefaulter().Default`), so a webhook called again (`reinvocationPolicy: IfNeeded`) sees
//! its own additions re-encoded: fields in the Go structs' order, maps (labels, annotations,
//! resource lists) sorted, quantities canonical, zero values of non-pointer `omitempty` fields
//! dropped, and the defaults of `pkg/apis/core/v1/defaults.go` filled in.
//!
//! Covered: the Pod, its metadata and spec, containers (all three lists), ports, env, resources,
//! mounts, probes, lifecycle hooks, security contexts and the volume sources Istio's template and the
//! ServiceAccount plugin write (emptyDir, secret, configMap, downwardAPI, projected, csi,
//! persistentVolumeClaim, hostPath). Fields this module does not know are kept, after the known
//! ones, in their order; the real server drops them.

use serde_json::{Map, Value};

/// How a field is encoded.
#[derive(Clone, Copy)]
enum Kind {
    /// Kept as written (a scalar, a pointer, a type not modelled here); dropped when `null` or `[]`.
    Plain,
    /// A non-pointer `omitempty` scalar: dropped when `null` or its zero value (`""`, `0`, `false`).
    Omit,
    /// `map[string]string`: keys sorted, dropped when empty.
    Strings,
    /// A `resource.Quantity` behind a pointer: canonical.
    Quantity,
    /// A non-pointer `resource.Quantity`: canonical, `"0"` when absent.
    QuantityAlways,
    /// `ResourceList`: keys sorted, values canonical, dropped when empty.
    Quantities,
    /// A struct behind a pointer: encoded as its type; dropped when `null`.
    Struct(&'static Type),
    /// A non-pointer struct: encoded as its type, `{}` when absent.
    Always(&'static Type),
    /// A list of structs: each encoded as its type; dropped when empty.
    List(&'static Type),
}

/// A Go struct: its JSON fields in declaration order, and its defaulter.
struct Type {
    fields: &'static [(&'static str, Kind)],
    defaults: fn(&mut Map<String, Value>),
}

const fn plain(fields: &'static [(&'static str, Kind)]) -> Type {
    Type { fields, defaults: |_| {} }
}

use Kind::{Always, List, Omit, Plain, Quantities, Quantity, QuantityAlways, Strings, Struct};

static POD: Type = plain(&[
    ("kind", Omit),
    ("apiVersion", Omit),
    ("metadata", Always(&OBJECT_META)),
    ("spec", Always(&POD_SPEC)),
    ("status", Always(&ANY)),
]);

/// A struct whose fields are all kept as they are.
static ANY: Type = plain(&[]);

static OBJECT_META: Type = plain(&[
    ("name", Omit),
    ("generateName", Omit),
    ("namespace", Omit),
    ("selfLink", Omit),
    ("uid", Omit),
    ("resourceVersion", Omit),
    ("generation", Omit),
    ("creationTimestamp", Plain),
    ("deletionTimestamp", Plain),
    ("deletionGracePeriodSeconds", Plain),
    ("labels", Strings),
    ("annotations", Strings),
    ("ownerReferences", List(&OWNER_REFERENCE)),
    ("finalizers", Plain),
    ("managedFields", Plain),
]);

static OWNER_REFERENCE: Type = plain(&[
    ("apiVersion", Plain),
    ("kind", Plain),
    ("name", Plain),
    ("uid", Plain),
    ("controller", Plain),
    ("blockOwnerDeletion", Plain),
]);

static TOLERATION: Type =
    plain(&[("key", Omit), ("operator", Omit), ("value", Omit), ("effect", Omit), ("tolerationSeconds", Plain)]);

static POD_SPEC: Type = Type {
    fields: &[
        ("volumes", List(&VOLUME)),
        ("initContainers", List(&CONTAINER)),
        ("containers", List(&CONTAINER)),
        ("ephemeralContainers", List(&CONTAINER)),
        ("restartPolicy", Omit),
        ("terminationGracePeriodSeconds", Plain),
        ("activeDeadlineSeconds", Plain),
        ("dnsPolicy", Omit),
        ("nodeSelector", Strings),
        ("serviceAccountName", Omit),
        ("serviceAccount", Omit),
        ("automountServiceAccountToken", Plain),
        ("nodeName", Omit),
        ("hostNetwork", Omit),
        ("hostPID", Omit),
        ("hostIPC", Omit),
        ("shareProcessNamespace", Plain),
        ("securityContext", Struct(&ANY)),
        ("imagePullSecrets", Plain),
        ("hostname", Omit),
        ("subdomain", Omit),
        ("affinity", Plain),
        ("schedulerName", Omit),
        ("tolerations", List(&TOLERATION)),
        ("hostAliases", Plain),
        ("priorityClassName", Omit),
        ("priority", Plain),
        ("dnsConfig", Plain),
        ("readinessGates", Plain),
        ("runtimeClassName", Plain),
        ("enableServiceLinks", Plain),
        ("preemptionPolicy", Plain),
        ("overhead", Quantities),
        ("topologySpreadConstraints", Plain),
        ("setHostnameAsFQDN", Plain),
        ("os", Plain),
        ("hostUsers", Plain),
        ("schedulingGates", Plain),
        ("resourceClaims", Plain),
        ("resources", Struct(&RESOURCES)),
        ("hostnameOverride", Plain),
    ],
    defaults: pod_spec_defaults,
};

/// `SetDefaults_PodSpec` and `SetDefaults_Pod`.
fn pod_spec_defaults(spec: &mut Map<String, Value>) {
    let mut default = |key: &str, value: Value| {
        if spec.get(key).is_none_or(|v| v.is_null() || v == "") {
            spec.insert(key.into(), value);
        }
    };
    default("dnsPolicy", "ClusterFirst".into());
    default("restartPolicy", "Always".into());
    default("terminationGracePeriodSeconds", 30.into());
    default("securityContext", Value::Object(Map::new()));
    default("schedulerName", "default-scheduler".into());
    default("enableServiceLinks", true.into());
    let host_network = spec.get("hostNetwork") == Some(&Value::Bool(true));
    for list in ["initContainers", "containers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            // Requests default to the limits, per resource (containers and init containers only).
            if let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut)
                && let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned()
            {
                let requests = resources.entry("requests").or_insert_with(|| Value::Object(Map::new()));
                if let Some(requests) = requests.as_object_mut() {
                    for (k, v) in limits {
                        requests.entry(k).or_insert(v);
                    }
                }
            }
            // With the host network, every container port is also a host port.
            if host_network && list == "containers" {
                for port in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(port) = port.as_object_mut()
                        && port.get("hostPort").is_none_or(|v| v.is_null() || v == 0)
                        && let Some(container_port) = port.get("containerPort").cloned()
                    {
                        port.insert("hostPort".into(), container_port);
                    }
                }
            }
        }
    }
}

static CONTAINER: Type = Type {
    fields: &[
        ("name", Omit),
        ("image", Omit),
        ("command", Plain),
        ("args", Plain),
        ("workingDir", Omit),
        ("ports", List(&CONTAINER_PORT)),
        ("envFrom", Plain),
        ("env", List(&ENV_VAR)),
        ("resources", Always(&RESOURCES)),
        ("resizePolicy", Plain),
        ("restartPolicy", Plain),
        ("restartPolicyRules", Plain),
        ("volumeMounts", List(&VOLUME_MOUNT)),
        ("volumeDevices", Plain),
        ("livenessProbe", Struct(&PROBE)),
        ("readinessProbe", Struct(&PROBE)),
        ("startupProbe", Struct(&PROBE)),
        ("lifecycle", Struct(&LIFECYCLE)),
        ("terminationMessagePath", Omit),
        ("terminationMessagePolicy", Omit),
        ("imagePullPolicy", Omit),
        ("securityContext", Struct(&SECURITY_CONTEXT)),
        ("stdin", Omit),
        ("stdinOnce", Omit),
        ("tty", Omit),
        // EphemeralContainer's own field, after the common ones.
        ("targetContainerName", Omit),
    ],
    defaults: container_defaults,
};

/// `SetDefaults_Container`.
fn container_defaults(c: &mut Map<String, Value>) {
    let unset = |c: &Map<String, Value>, key: &str| c.get(key).is_none_or(|v| v.is_null() || v == "");
    if unset(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == Some("latest") { "Always" } else { "IfNotPresent" };
        c.insert("imagePullPolicy".into(), policy.into());
    }
    if unset(c, "terminationMessagePath") {
        c.insert("terminationMessagePath".into(), "/dev/termination-log".into());
    }
    if unset(c, "terminationMessagePolicy") {
        c.insert("terminationMessagePolicy".into(), "File".into());
    }
}

/// The tag `parsers.ParseImageName` reads from an image reference: the one written, `latest` when
/// there is neither a tag nor a digest, `None` for a digest without a tag.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_some() => None,
        None => Some("latest"),
    }
}

static CONTAINER_PORT: Type = Type {
    fields: &[("name", Omit), ("hostPort", Omit), ("containerPort", Plain), ("protocol", Omit), ("hostIP", Omit)],
    defaults: |p| default_str(p, "protocol", "TCP"),
};

static ENV_VAR: Type = plain(&[("name", Plain), ("value", Omit), ("valueFrom", Struct(&ENV_VAR_SOURCE))]);

static ENV_VAR_SOURCE: Type = plain(&[
    ("fieldRef", Struct(&FIELD_REF)),
    ("resourceFieldRef", Struct(&RESOURCE_FIELD_REF)),
    ("configMapKeyRef", Plain),
    ("secretKeyRef", Plain),
    ("fileKeyRef", Plain),
]);

static FIELD_REF: Type =
    Type { fields: &[("apiVersion", Omit), ("fieldPath", Plain)], defaults: |f| default_str(f, "apiVersion", "v1") };

static RESOURCE_FIELD_REF: Type = plain(&[("containerName", Omit), ("resource", Plain), ("divisor", QuantityAlways)]);

static RESOURCES: Type = plain(&[("limits", Quantities), ("requests", Quantities), ("claims", Plain)]);

static VOLUME_MOUNT: Type = plain(&[
    ("name", Plain),
    ("readOnly", Omit),
    ("recursiveReadOnly", Plain),
    ("mountPath", Plain),
    ("subPath", Omit),
    ("mountPropagation", Plain),
    ("subPathExpr", Omit),
]);

static PROBE: Type = Type {
    fields: &[
        ("exec", Plain),
        ("httpGet", Struct(&HTTP_GET)),
        ("tcpSocket", Plain),
        ("grpc", Struct(&GRPC)),
        ("initialDelaySeconds", Omit),
        ("timeoutSeconds", Omit),
        ("periodSeconds", Omit),
        ("successThreshold", Omit),
        ("failureThreshold", Omit),
        ("terminationGracePeriodSeconds", Plain),
    ],
    defaults: probe_defaults,
};

/// `SetDefaults_Probe`: a zero is defaulted too.
fn probe_defaults(p: &mut Map<String, Value>) {
    for (key, value) in [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)]
    {
        if p.get(key).is_none_or(|v| v.is_null() || v == 0) {
            p.insert(key.into(), value.into());
        }
    }
}

static HTTP_GET: Type = Type {
    fields: &[("path", Omit), ("port", Plain), ("host", Omit), ("scheme", Omit), ("httpHeaders", Plain)],
    defaults: |h| {
        default_str(h, "path", "/");
        default_str(h, "scheme", "HTTP");
    },
};

static GRPC: Type = Type {
    fields: &[("port", Plain), ("service", Plain)],
    defaults: |g| {
        g.entry("service").or_insert_with(|| "".into());
    },
};

static LIFECYCLE: Type =
    plain(&[("postStart", Struct(&LIFECYCLE_HANDLER)), ("preStop", Struct(&LIFECYCLE_HANDLER)), ("stopSignal", Plain)]);

static LIFECYCLE_HANDLER: Type =
    plain(&[("exec", Plain), ("httpGet", Struct(&HTTP_GET)), ("tcpSocket", Plain), ("sleep", Plain)]);

static SECURITY_CONTEXT: Type = plain(&[
    ("capabilities", Struct(&CAPABILITIES)),
    ("privileged", Plain),
    ("seLinuxOptions", Plain),
    ("windowsOptions", Plain),
    ("runAsUser", Plain),
    ("runAsGroup", Plain),
    ("runAsNonRoot", Plain),
    ("readOnlyRootFilesystem", Plain),
    ("allowPrivilegeEscalation", Plain),
    ("procMount", Plain),
    ("seccompProfile", Plain),
    ("appArmorProfile", Plain),
]);

static CAPABILITIES: Type = plain(&[("add", Plain), ("drop", Plain)]);

/// The volume sources, in `VolumeSource`'s order.
const VOLUME_SOURCES: [(&str, Kind); 30] = [
    ("hostPath", Struct(&HOST_PATH)),
    ("emptyDir", Struct(&EMPTY_DIR)),
    ("gcePersistentDisk", Plain),
    ("awsElasticBlockStore", Plain),
    ("gitRepo", Plain),
    ("secret", Struct(&SECRET_VOLUME)),
    ("nfs", Plain),
    ("iscsi", Plain),
    ("glusterfs", Plain),
    ("persistentVolumeClaim", Struct(&PVC_VOLUME)),
    ("rbd", Plain),
    ("flexVolume", Plain),
    ("cinder", Plain),
    ("cephfs", Plain),
    ("flocker", Plain),
    ("downwardAPI", Struct(&DOWNWARD_API_VOLUME)),
    ("fc", Plain),
    ("azureFile", Plain),
    ("configMap", Struct(&CONFIG_MAP_VOLUME)),
    ("vsphereVolume", Plain),
    ("quobyte", Plain),
    ("azureDisk", Plain),
    ("photonPersistentDisk", Plain),
    ("projected", Struct(&PROJECTED_VOLUME)),
    ("portworxVolume", Plain),
    ("scaleIO", Plain),
    ("storageos", Plain),
    ("csi", Struct(&CSI_VOLUME)),
    ("ephemeral", Plain),
    ("image", Plain),
];

static VOLUME: Type = Type {
    fields: &{
        let mut fields = [("name", Plain); 31];
        let mut i = 0;
        while i < VOLUME_SOURCES.len() {
            fields[i + 1] = VOLUME_SOURCES[i];
            i += 1;
        }
        fields
    },
    defaults: volume_defaults,
};

/// `SetDefaults_Volume`: a volume without a source is an emptyDir.
fn volume_defaults(v: &mut Map<String, Value>) {
    if !VOLUME_SOURCES.iter().any(|(key, _)| v.get(*key).is_some_and(|s| !s.is_null())) {
        v.insert("emptyDir".into(), Value::Object(Map::new()));
    }
}

static HOST_PATH: Type = Type {
    fields: &[("path", Plain), ("type", Plain)],
    defaults: |h| {
        h.entry("type").or_insert_with(|| "".into());
    },
};

static EMPTY_DIR: Type = plain(&[("medium", Omit), ("sizeLimit", Quantity)]);

static KEY_TO_PATH: Type = plain(&[("key", Plain), ("path", Plain), ("mode", Plain)]);

static SECRET_VOLUME: Type = Type {
    fields: &[("secretName", Omit), ("items", List(&KEY_TO_PATH)), ("defaultMode", Plain), ("optional", Plain)],
    defaults: default_mode,
};

static CONFIG_MAP_VOLUME: Type = Type {
    fields: &[("name", Omit), ("items", List(&KEY_TO_PATH)), ("defaultMode", Plain), ("optional", Plain)],
    defaults: default_mode,
};

static DOWNWARD_API_FILE: Type = plain(&[
    ("path", Plain),
    ("fieldRef", Struct(&FIELD_REF)),
    ("resourceFieldRef", Struct(&RESOURCE_FIELD_REF)),
    ("mode", Plain),
]);

static DOWNWARD_API_VOLUME: Type =
    Type { fields: &[("items", List(&DOWNWARD_API_FILE)), ("defaultMode", Plain)], defaults: default_mode };

static PROJECTED_VOLUME: Type =
    Type { fields: &[("sources", List(&VOLUME_PROJECTION)), ("defaultMode", Plain)], defaults: default_mode };

static VOLUME_PROJECTION: Type = plain(&[
    ("secret", Struct(&KEYED_PROJECTION)),
    ("downwardAPI", Struct(&DOWNWARD_API_PROJECTION)),
    ("configMap", Struct(&KEYED_PROJECTION)),
    ("serviceAccountToken", Struct(&TOKEN_PROJECTION)),
    ("clusterTrustBundle", Plain),
    ("podCertificate", Plain),
]);

/// `SecretProjection` and `ConfigMapProjection`.
static KEYED_PROJECTION: Type = plain(&[("name", Omit), ("items", List(&KEY_TO_PATH)), ("optional", Plain)]);

static DOWNWARD_API_PROJECTION: Type = plain(&[("items", List(&DOWNWARD_API_FILE))]);

static TOKEN_PROJECTION: Type = Type {
    fields: &[("audience", Omit), ("expirationSeconds", Plain), ("path", Plain)],
    defaults: |t| {
        t.entry("expirationSeconds").or_insert_with(|| 3600.into());
    },
};

static PVC_VOLUME: Type = plain(&[("claimName", Plain), ("readOnly", Omit)]);

static CSI_VOLUME: Type = plain(&[
    ("driver", Plain),
    ("readOnly", Plain),
    ("fsType", Plain),
    ("volumeAttributes", Strings),
    ("nodePublishSecretRef", Plain),
]);

/// `defaultMode: 420` (0644) of secret, configMap, downwardAPI and projected volumes.
fn default_mode(v: &mut Map<String, Value>) {
    v.entry("defaultMode").or_insert_with(|| 420.into());
}

fn default_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if m.get(key).is_none_or(|v| v.is_null() || v == "") {
        m.insert(key.into(), value.into());
    }
}

/// `pod` as the API server holds it after decoding it into `v1.Pod`, defaulting it and encoding
/// it again. A value that is not an object is returned as it is.
pub fn decoded_pod(pod: &Value) -> Value {
    encode(&POD, pod)
}

fn encode(ty: &Type, v: &Value) -> Value {
    let Value::Object(input) = v else { return v.clone() };
    let mut input = input.clone();
    (ty.defaults)(&mut input);
    let mut out = Map::new();
    for (key, kind) in ty.fields {
        if let Some(value) = input.shift_remove(*key)
            && let Some(value) = field(*kind, value)
        {
            out.insert((*key).into(), value);
        } else if let Always(_) = kind {
            out.insert((*key).into(), Value::Object(Map::new()));
        } else if let QuantityAlways = kind {
            out.insert((*key).into(), "0".into());
        }
    }
    // Fields this module does not model, as they were.
    for (key, value) in input {
        if !value.is_null() {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

/// A field's encoded value, `None` when Go's encoder leaves it out.
fn field(kind: Kind, value: Value) -> Option<Value> {
    let empty_list = matches!(&value, Value::Array(items) if items.is_empty());
    if value.is_null() {
        return None;
    }
    match kind {
        Plain => (!empty_list).then_some(value),
        Omit => {
            let zero = value == "" || value == 0 || value == false;
            (!zero).then_some(value)
        }
        Strings => sorted(value, Some),
        Quantities => sorted(value, |q| Some(quantity(q))),
        Quantity | QuantityAlways => Some(quantity(value)),
        Struct(ty) | Always(ty) => Some(encode(ty, &value)),
        List(ty) => match value {
            Value::Array(items) if items.is_empty() => None,
            Value::Array(items) => Some(Value::Array(items.iter().map(|i| encode(ty, i)).collect())),
            other => Some(other),
        },
    }
}

/// A map with its keys sorted, as Go's encoder writes maps; `None` when empty.
fn sorted(value: Value, each: impl Fn(Value) -> Option<Value>) -> Option<Value> {
    let Value::Object(map) = value else { return Some(value) };
    if map.is_empty() {
        return None;
    }
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Value::Object(entries.into_iter().filter_map(|(k, v)| each(v).map(|v| (k, v))).collect()))
}

/// A quantity in the form `resource.Quantity` writes back (`1000m` → `1`, a number → its text);
/// one that does not parse is kept (the real server would have refused the patch).
fn quantity(value: Value) -> Value {
    let text = match &value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return value,
    };
    mesh_core::inject::quantity::canonical(&text).map_or(value, Value::String)
}

#[cfg(test)]
mod tests;
