//! The init container (`istio-init`, or `istio-validation` with CNI) and the `istio-iptables` arguments
//! it runs with, rendered through [`CaptureConfig`](crate::capture::CaptureConfig).

use serde_json::{Map, Value, json};

use super::{Context, number};
use crate::capture::{CaptureConfig, CidrList, InterceptionMode, PortList, split_list};
use crate::{names, ports};

impl Context<'_> {
    pub(super) fn init_image(&self) -> String {
        if let Some(image) = self.ann(names::PROXY_INIT_IMAGE) {
            return image.to_owned();
        }
        match self.ann(names::PROXY_IMAGE) {
            Some(image) if image.contains('/') => image.to_owned(),
            _ => self.cfg.proxy_init.image.clone(),
        }
    }

    pub(super) fn exclude_inbound_ports(&self) -> String {
        exclude_inbound_port(
            &self.status_port(),
            &self.annotation(names::EXCLUDE_INBOUND_PORTS, &self.cfg.exclude_inbound_ports),
        )
    }

    pub(super) fn include_outbound_ports(&self) -> Option<String> {
        (self.ann(names::INCLUDE_OUTBOUND_PORTS).is_some() || !self.cfg.include_outbound_ports.is_empty())
            .then(|| self.annotation(names::INCLUDE_OUTBOUND_PORTS, &self.cfg.include_outbound_ports))
    }

    pub(super) fn exclude_outbound_ports(&self) -> Option<String> {
        (self.ann(names::EXCLUDE_OUTBOUND_PORTS).is_some() || !self.cfg.exclude_outbound_ports.is_empty())
            .then(|| self.annotation(names::EXCLUDE_OUTBOUND_PORTS, &self.cfg.exclude_outbound_ports))
    }

    pub(super) fn virtual_interfaces(&self) -> Option<String> {
        self.ann(names::REROUTE_VIRTUAL_INTERFACES).or_else(|| self.ann(names::KUBEVIRT_INTERFACES)).map(str::to_owned)
    }

    /// The `istio-iptables` arguments, rendered with [`CaptureConfig`].
    pub(super) fn init_args(&self) -> Vec<Value> {
        let cfg = self.cfg;
        let lenient_ports = |v: &str| v.parse::<PortList>().unwrap_or(PortList::List(Vec::new()));
        let lenient_cidrs = |v: &str| v.parse::<CidrList>().unwrap_or(CidrList::List(Vec::new()));
        let mode = self.interception_mode();
        let uid: Option<u32> = if self.tproxy() { Some(ports::PROXY_UID) } else { self.uid().parse().ok() };
        let mut exclude = PortList::List(ports::DEFAULT_EXCLUDED_INBOUND.to_vec());
        if let (PortList::List(list), PortList::List(more)) =
            (&mut exclude, lenient_ports(&self.exclude_inbound_ports()))
        {
            list.extend(more);
        }
        let capture = CaptureConfig {
            proxy_port: Some(ports::OUTBOUND_CAPTURE),
            inbound_capture_port: Some(ports::INBOUND_CAPTURE),
            proxy_uid: uid.map(|u| vec![u]),
            interception_mode: mode.parse::<InterceptionMode>().ok(),
            outbound_ip_ranges_include: Some(lenient_cidrs(
                &self.annotation(names::INCLUDE_OUTBOUND_IP_RANGES, &cfg.include_ip_ranges),
            )),
            outbound_ip_ranges_exclude: Some(lenient_cidrs(
                &self.annotation(names::EXCLUDE_OUTBOUND_IP_RANGES, &cfg.exclude_ip_ranges),
            )),
            inbound_ports_include: Some(lenient_ports(
                &self.annotation(names::INCLUDE_INBOUND_PORTS, &cfg.include_inbound_ports),
            )),
            inbound_ports_exclude: Some(exclude),
            outbound_ports_include: self.include_outbound_ports().map(|v| lenient_ports(&v)),
            outbound_ports_exclude: self.exclude_outbound_ports().map(|v| lenient_ports(&v)),
            kube_virt_interfaces: self.virtual_interfaces().map(|v| split_list(&v)),
            exclude_interfaces: self.ann(names::EXCLUDE_INTERFACES).map(split_list),
            log_output_level: Some(self.agent_log_level()),
            log_as_json: cfg.log_as_json,
            run_validation: cfg.cni.enabled,
            skip_rule_apply: cfg.cni.enabled,
            force_apply: !cfg.cni.enabled && cfg.proxy_init.force_apply_iptables,
            native_nftables: cfg.native_nftables,
            ..CaptureConfig::default()
        };
        let mut args = vec!["istio-iptables".to_owned()];
        args.extend(capture.to_args());
        args.into_iter().map(Value::String).collect()
    }

    pub(super) fn init_container(&self) -> Value {
        if self.default_proxy_inputs()
            && let Some(prebuilt) = self.reuse(|p| &p.init_container)
        {
            return prebuilt.clone();
        }
        let cfg = self.cfg;
        let cni = cfg.cni.enabled;
        let mut c = Map::new();
        let name = if cni { names::CONTAINER_VALIDATION } else { names::CONTAINER_INIT };
        c.insert("name".into(), json!(name));
        c.insert("image".into(), json!(self.init_image()));
        c.insert("args".into(), Value::Array(self.init_args()));
        if !cfg.image_pull_policy.is_empty() {
            c.insert("imagePullPolicy".into(), json!(cfg.image_pull_policy));
        }
        let env = self.metadata_env();
        if !env.is_empty() {
            c.insert("env".into(), Value::Array(env));
        }
        c.insert("resources".into(), self.resources());
        let privileged = cfg.proxy.privileged;
        let mut sc = Map::new();
        sc.insert("allowPrivilegeEscalation".into(), json!(privileged));
        sc.insert("privileged".into(), json!(privileged));
        if cni {
            sc.insert("capabilities".into(), json!({"drop": ["ALL"]}));
            let (uid, gid) = if self.tproxy() { ("1337".into(), "1337".into()) } else { (self.uid(), self.gid()) };
            sc.insert("readOnlyRootFilesystem".into(), json!(true));
            sc.insert("runAsGroup".into(), number(&gid));
            sc.insert("runAsUser".into(), number(&uid));
            sc.insert("runAsNonRoot".into(), json!(true));
        } else {
            sc.insert("capabilities".into(), json!({"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}));
            sc.insert("readOnlyRootFilesystem".into(), json!(false));
            sc.insert("runAsGroup".into(), json!(0));
            sc.insert("runAsNonRoot".into(), json!(false));
            sc.insert("runAsUser".into(), json!(0));
        }
        c.insert("securityContext".into(), Value::Object(sc));
        Value::Object(c)
    }
}

/// Istio's `excludeInboundPort`: adds the status port to the excluded ports unless it is 0 or listed.
fn exclude_inbound_port(port: &str, excluded: &str) -> String {
    let port = port.trim();
    if port.is_empty() || port == "0" {
        return excluded.to_owned();
    }
    let mut out = Vec::new();
    for p in excluded.split(',') {
        if p == port {
            return excluded.to_owned();
        }
        let p = p.trim();
        if !p.is_empty() {
            out.push(p);
        }
    }
    out.push(port);
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_inbound_port_appends_status_port_once() {
        assert_eq!(exclude_inbound_port("15020", ""), "15020");
        assert_eq!(exclude_inbound_port("15020", "4,5,6"), "4,5,6,15020");
        assert_eq!(exclude_inbound_port("0", "4,5,6"), "4,5,6");
        assert_eq!(exclude_inbound_port("5", "4,5,6"), "4,5,6");
    }
}
