//! The integration and end-to-end suites of mesh, one module each, in one test binary (a single link
//! instead of one per suite). Run one suite with `cargo nextest run -p mesh-tests <suite>::`.

mod apiserver_kubectl;
mod apiserver_wire;
mod chart_e2e;
mod chart_render;
mod day2_cluster;
mod docs_flags;
mod envoy_static;
mod explain_differential;
mod explain_endpoints;
mod explain_example;
mod explain_gateway;
mod explain_golden;
mod explain_inbound_differential;
mod explain_pod;
mod init_apply;
mod init_capture;
mod init_conformance;
mod inject_cli;
mod inject_conformance;
mod inject_istio_config;
mod krew_manifest;
mod plugin_kubectl;
mod plugin_paging;
mod proxy_status_bench;
mod proxy_status_e2e;
mod webhook_hostile;
mod webhook_https;
mod webhook_rereview;
mod webhook_selfsigned;
mod xds_discovery;
