use super::*;

fn settings() -> SelfSignedSettings {
    SelfSignedSettings::new("mesh-webhook".into(), "istio-system".into(), "mesh-webhook-tls".into(), None)
}

fn bundle_at(now: OffsetDateTime, s: &SelfSignedSettings) -> Bundle {
    let (ca_cert, ca_key) = new_ca(now, s.ca_validity).unwrap();
    let (cert, key) = issue(&ca_key, &s.dns_names(), now, s.serving_validity).unwrap();
    Bundle { ca_cert, ca_key, cert, key }
}

#[test]
fn dns_names_cover_the_service() {
    assert_eq!(settings().dns_names(), ["mesh-webhook", "mesh-webhook.istio-system", "mesh-webhook.istio-system.svc"]);
}

#[test]
fn fresh_bundle_is_kept_and_serves_tls() {
    let s = settings();
    let now = OffsetDateTime::now_utc();
    let bundle = bundle_at(now, &s);
    assert_eq!(plan(Some(&bundle), &s.dns_names(), now, s.renew_fraction), Renewal::Keep);
    assert!(crate::tls::certified_key(bundle.cert.as_bytes(), bundle.key.as_bytes()).is_ok());
    let info = cert_info(&bundle.cert).unwrap();
    assert_eq!(info.dns_names, s.dns_names());
    assert!(info.issuer_is_ca);
}

#[test]
fn renewal_decisions() {
    let s = settings();
    let now = OffsetDateTime::now_utc();
    let bundle = bundle_at(now, &s);
    assert_eq!(plan(None, &s.dns_names(), now, s.renew_fraction), Renewal::NewCa);
    // Serving certificate in the last third of its year: renew it, keep the CA.
    let later = now + time::Duration::days(300);
    assert_eq!(plan(Some(&bundle), &s.dns_names(), later, s.renew_fraction), Renewal::NewServing);
    // CA in the last third of its ten years: start over.
    let much_later = now + time::Duration::days(8 * 365);
    assert_eq!(plan(Some(&bundle), &s.dns_names(), much_later, s.renew_fraction), Renewal::NewCa);
    // Another Service name: new serving certificate.
    let other = SelfSignedSettings::new("other".into(), "ns".into(), "x".into(), None);
    assert_eq!(plan(Some(&bundle), &other.dns_names(), now, s.renew_fraction), Renewal::NewServing);
    // Tampered CA key or serving key.
    let (_, stray_key) = new_ca(now, s.ca_validity).unwrap();
    let broken = Bundle { ca_key: stray_key.clone(), ..bundle.clone() };
    assert_eq!(plan(Some(&broken), &s.dns_names(), now, s.renew_fraction), Renewal::NewCa);
    let broken = Bundle { key: stray_key, ..bundle.clone() };
    assert_eq!(plan(Some(&broken), &s.dns_names(), now, s.renew_fraction), Renewal::NewServing);
    let broken = Bundle { ca_cert: "garbage".into(), ..bundle };
    assert_eq!(plan(Some(&broken), &s.dns_names(), now, s.renew_fraction), Renewal::NewCa);
}

#[test]
fn ca_bundle_patch_touches_only_stale_webhooks() {
    let config: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mesh", "resourceVersion": "7"},
        "webhooks": [
            {"name": "a.mesh.io", "clientConfig": {"caBundle": base64::engine::general_purpose::STANDARD.encode("CA")},
             "admissionReviewVersions": ["v1"], "sideEffects": "None"},
            {"name": "b.mesh.io", "clientConfig": {}, "admissionReviewVersions": ["v1"], "sideEffects": "None"}
        ]
    }))
    .unwrap();
    let patch = serde_json::to_value(ca_bundle_patch(&config, "CA").unwrap()).unwrap();
    assert_eq!(
        patch,
        serde_json::json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "Q0E="}
        ])
    );
    let mut fixed = config.clone();
    if let Some(w) = fixed.webhooks.as_mut() {
        w[1].client_config.ca_bundle = Some(ByteString(b"CA".to_vec()));
    }
    assert!(ca_bundle_patch(&fixed, "CA").is_none());
}

fn configmap(name: &str, uid: Option<&str>) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            uid: uid.map(str::to_string),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn reference(kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        ..Default::default()
    }
}

#[test]
fn created_secret_references_the_owner_configmap() {
    let s = settings();
    let bundle = bundle_at(OffsetDateTime::now_utc(), &s);
    let owner = owner_reference(&configmap("mesh-webhook", Some("u-1"))).expect("stored ConfigMap");
    let secret = serde_json::to_value(new_secret(&s, &bundle, Some(&owner))).expect("serialize");
    assert_eq!(
        secret["metadata"]["ownerReferences"],
        serde_json::json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "mesh-webhook", "uid": "u-1"}])
    );
    assert_eq!(secret["metadata"]["name"], "mesh-webhook-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let unowned = serde_json::to_value(new_secret(&s, &bundle, None)).expect("serialize");
    assert!(unowned["metadata"].get("ownerReferences").is_none(), "{unowned}");
    assert_eq!(owner_reference(&configmap("mesh-webhook", None)), None, "a ConfigMap without uid was never stored");
}

#[test]
fn ownership_of_existing_secrets() {
    let owner = reference("ConfigMap", "mesh-webhook", "u-2");
    let with = |refs: Vec<OwnerReference>| Secret {
        metadata: kube::api::ObjectMeta { owner_references: Some(refs), ..Default::default() },
        ..Default::default()
    };
    assert_eq!(ownership(&Secret::default(), Some(&owner)), Ownership::Missing);
    assert_eq!(ownership(&with(vec![reference("Deployment", "mesh-webhook", "d")]), Some(&owner)), Ownership::Missing);
    assert_eq!(ownership(&with(vec![owner.clone()]), Some(&owner)), Ownership::Current);
    assert_eq!(ownership(&with(vec![reference("ConfigMap", "mesh-webhook", "u-1")]), Some(&owner)), Ownership::Stale);
    assert_eq!(ownership(&Secret::default(), None), Ownership::Current);

    // The stale reference is replaced, other owners are kept.
    let other = reference("Deployment", "other", "d");
    let refs = [other.clone(), reference("ConfigMap", "mesh-webhook", "u-1")];
    assert_eq!(with_owner(Some(&refs), &owner), vec![other, owner.clone()]);
    assert_eq!(with_owner(None, &owner), vec![owner]);
}
