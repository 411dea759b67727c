//! Resource types the server serves: what a test registers, and the built-in catalog.

/// A column of `kubectl get`'s table for a resource (a CRD's `additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header (`Hosts`).
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `date`, ...).
    pub type_: String,
    /// Simple JSONPath into the object (`.spec.hosts`).
    pub json_path: String,
    /// Columns with priority > 0 only appear with `-o wide`.
    pub priority: i64,
    /// Column description.
    pub description: String,
}

/// A subresource served by the server (`status`, `portforward`, `proxy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    /// `status`.
    pub name: String,
    /// The kind it returns (`Pod`, `PodPortForwardOptions`).
    pub kind: String,
    /// Verbs, as discovery lists them.
    pub verbs: Vec<String>,
}

/// One served version of a Kubernetes resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, "" for the core group.
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Kind (`Pod`).
    pub kind: String,
    /// Plural resource name used in URLs (`pods`).
    pub plural: String,
    /// Singular name (`pod`).
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`po`).
    pub short_names: Vec<String>,
    /// Categories (`all`, `istio-io`).
    pub categories: Vec<String>,
    /// Verbs on the resource itself, as discovery lists them.
    pub verbs: Vec<String>,
    /// Served subresources.
    pub subresources: Vec<Subresource>,
    /// Backed by a CustomResourceDefinition: list items keep `kind`/`apiVersion`, like the real server.
    pub custom: bool,
    /// Fields besides `metadata.name`/`metadata.namespace` accepted in field selectors.
    pub field_selectors: Vec<String>,
    /// Extra table columns for `kubectl get` (NAME comes first and AGE last on their own).
    pub printer_columns: Vec<PrinterColumn>,
    /// Whether this is the preferred (storage) version of its group and resource.
    pub preferred: bool,
}

const ALL_VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

impl ResourceType {
    /// A resource type with the standard verbs and no subresources; `singular` is the lowercase kind.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            verbs: ALL_VERBS.iter().map(|v| (*v).to_string()).collect(),
            subresources: Vec::new(),
            custom: false,
            field_selectors: Vec::new(),
            printer_columns: Vec::new(),
            preferred: true,
        }
    }

    /// Adds the `status` subresource (PUT/PATCH `.../status` change only `.status`).
    pub fn with_status(mut self) -> Self {
        self.subresources.push(Subresource {
            name: "status".into(),
            kind: self.kind.clone(),
            verbs: vec!["get".into(), "patch".into(), "update".into()],
        });
        self
    }

    /// Sets the short names.
    pub fn with_short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|n| (*n).to_string()).collect();
        self
    }

    /// Sets the categories.
    pub fn with_categories(mut self, names: &[&str]) -> Self {
        self.categories = names.iter().map(|n| (*n).to_string()).collect();
        self
    }

    /// Sets extra fields accepted in field selectors.
    pub fn with_field_selectors(mut self, fields: &[&str]) -> Self {
        self.field_selectors = fields.iter().map(|n| (*n).to_string()).collect();
        self
    }

    /// Sets the verbs discovery lists for the resource.
    pub fn with_verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| (*v).to_string()).collect();
        self
    }

    fn with_sub(mut self, name: &str, kind: &str, verbs: &[&str]) -> Self {
        self.subresources.push(Subresource {
            name: name.into(),
            kind: kind.into(),
            verbs: verbs.iter().map(|v| (*v).to_string()).collect(),
        });
        self
    }

    /// `v1` or `networking.istio.io/v1`: the `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Whether it has the named subresource.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }
}

/// The built-in types every server serves (the ones the mesh tools and their tests use).
pub fn builtins() -> Vec<ResourceType> {
    vec![
        ResourceType::new("", "v1", "Namespace", "namespaces", false)
            .with_verbs(&["create", "delete", "get", "list", "patch", "update", "watch"])
            .with_status()
            .with_short_names(&["ns"])
            .with_field_selectors(&["status.phase"]),
        ResourceType::new("", "v1", "Pod", "pods", true)
            .with_short_names(&["po"])
            .with_categories(&["all"])
            .with_field_selectors(&[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ])
            .with_sub("portforward", "PodPortForwardOptions", &["create", "get"])
            .with_sub("proxy", "PodProxyOptions", &["create", "delete", "get", "patch", "update"])
            .with_status(),
        ResourceType::new("", "v1", "Service", "services", true)
            .with_short_names(&["svc"])
            .with_categories(&["all"])
            .with_status(),
        ResourceType::new("", "v1", "Endpoints", "endpoints", true).with_short_names(&["ep"]),
        ResourceType::new("", "v1", "ConfigMap", "configmaps", true).with_short_names(&["cm"]),
        ResourceType::new("", "v1", "Secret", "secrets", true).with_field_selectors(&["type"]),
        ResourceType::new("", "v1", "ServiceAccount", "serviceaccounts", true).with_short_names(&["sa"]),
        ResourceType::new("", "v1", "Node", "nodes", false).with_short_names(&["no"]).with_status(),
        ResourceType::new("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
        ResourceType::new("apps", "v1", "Deployment", "deployments", true)
            .with_short_names(&["deploy"])
            .with_categories(&["all"])
            .with_status(),
        ResourceType::new("apps", "v1", "ReplicaSet", "replicasets", true)
            .with_short_names(&["rs"])
            .with_categories(&["all"])
            .with_status(),
        ResourceType::new("apps", "v1", "StatefulSet", "statefulsets", true)
            .with_short_names(&["sts"])
            .with_categories(&["all"])
            .with_status(),
        ResourceType::new("apps", "v1", "DaemonSet", "daemonsets", true)
            .with_short_names(&["ds"])
            .with_categories(&["all"])
            .with_status(),
        ResourceType::new("batch", "v1", "Job", "jobs", true).with_categories(&["all"]).with_status(),
        ResourceType::new(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        )
        .with_categories(&["api-extensions"]),
        ResourceType::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        )
        .with_categories(&["api-extensions"]),
        ResourceType::new("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false)
            .with_short_names(&["crd", "crds"])
            .with_categories(&["api-extensions"])
            .with_status(),
    ]
}
