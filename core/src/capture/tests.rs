use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// What Istio's injector writes for a default pod (after the leading `istio-iptables`).
const ISTIO_DEFAULT: &[&str] = &[
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
];

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn istio_default_args_round_trip_exactly() {
    assert_eq!(&ISTIO_DEFAULT_INIT_ARGS[1..], ISTIO_DEFAULT, "the published constant is Istio's default");
    let cfg = CaptureConfig::from_args(ISTIO_DEFAULT).unwrap();
    assert_eq!(cfg.to_args(), args(ISTIO_DEFAULT));
    assert_eq!(cfg.proxy_port, Some(15001));
    assert_eq!(cfg.outbound_ip_ranges_include, Some(CidrList::All));
    assert_eq!(cfg.outbound_ip_ranges_exclude, Some(CidrList::List(vec![])));
    assert_eq!(cfg.inbound_ports_exclude, Some(PortList::List(vec![15090, 15021, 15020])));
}

#[test]
fn injected_container_args_with_leading_command_and_log_level() {
    let mut full = vec!["istio-iptables"];
    full.extend_from_slice(ISTIO_DEFAULT);
    full.extend_from_slice(&[
        "-q",
        "80,443",
        "-o",
        "3306",
        "-k",
        "net1,net2",
        "-c",
        "eth9",
        "--log_output_level=default:info",
    ]);
    let cfg = CaptureConfig::from_args(&full).unwrap();
    assert_eq!(cfg.log_output_level.as_deref(), Some("default:info"));
    assert_eq!(cfg.kube_virt_interfaces, Some(vec!["net1".to_string(), "net2".to_string()]));
    assert_eq!(cfg.to_args(), args(&full[1..]));
}

#[test]
fn every_pflag_form_parses_the_same() {
    for form in
        [vec!["-p", "123"], vec!["-p=123"], vec!["-p123"], vec!["--envoy-port", "123"], vec!["--envoy-port=123"]]
    {
        let cfg = CaptureConfig::from_args(&form).unwrap();
        assert_eq!(cfg.proxy_port, Some(123), "{form:?}");
    }
}

#[test]
fn switches_accept_go_booleans() {
    assert!(CaptureConfig::from_args(&["--dry-run"]).unwrap().dry_run);
    assert!(CaptureConfig::from_args(&["-n"]).unwrap().dry_run);
    assert!(CaptureConfig::from_args(&["--redirect-dns=true"]).unwrap().redirect_dns);
    assert!(!CaptureConfig::from_args(&["--redirect-dns=false"]).unwrap().redirect_dns);
    assert!(CaptureConfig::from_args(&["--drop-invalid=1"]).unwrap().drop_invalid);
    let err = CaptureConfig::from_args(&["--reconcile=yes"]).unwrap_err();
    assert_eq!(err.to_string(), r#"invalid value for --reconcile: "yes": not a boolean"#);
}

#[test]
fn every_long_flag_of_istio_iptables_is_known() {
    let flags = [
        "--envoy-port=1",
        "--inbound-capture-port=2",
        "--inbound-tunnel-port=3",
        "--proxy-uid=4",
        "--proxy-gid=5",
        "--istio-inbound-interception-mode=TPROXY",
        "--istio-inbound-tproxy-mark=7",
        "--istio-inbound-tproxy-route-table=8",
        "--istio-inbound-ports=9",
        "--istio-local-exclude-ports=10",
        "--istio-service-cidr=10.0.0.0/8",
        "--istio-service-exclude-cidr=10.1.0.0/16",
        "--istio-outbound-ports=11",
        "--istio-local-outbound-ports-exclude=12",
        "--kube-virt-interfaces=a",
        "--istio-exclude-interfaces=b",
        "--dry-run",
        "--redirect-dns",
        "--capture-all-dns",
        "--drop-invalid",
        "--dual-stack",
        "--skip-rule-apply",
        "--run-validation",
        "--probe-timeout=2s",
        "--iptables-probe-port=13",
        "--reconcile",
        "--cleanup-only",
        "--force-apply",
        "--native-nftables",
        "--force-iptables-binary=iptables-legacy",
        "--log_output_level=default:debug",
        "--log_as_json",
    ];
    let cfg = CaptureConfig::from_args(&flags).unwrap();
    assert_eq!(cfg.effective_interception_mode(), InterceptionMode::Tproxy);
    assert_eq!(cfg.probe_timeout, Some(Duration::from_secs(2)));
    assert!(cfg.native_nftables && cfg.log_as_json && cfg.cleanup_only);
    // Rendering and parsing again gives the same settings.
    assert_eq!(CaptureConfig::from_args(&cfg.to_args()).unwrap(), cfg);
}

#[test]
fn short_forms_match_istio() {
    let cfg = CaptureConfig::from_args(&[
        "-p",
        "1",
        "-z",
        "2",
        "-e",
        "3",
        "-u",
        "4",
        "-g",
        "5",
        "-m",
        "TPROXY",
        "-b",
        "6",
        "-d",
        "7",
        "-c",
        "eth1",
        "-i",
        "1.0.0.0/8",
        "-x",
        "2.0.0.0/8",
        "-q",
        "8",
        "-o",
        "9",
        "-k",
        "v1",
        "-t",
        "10",
        "-r",
        "11",
    ])
    .unwrap();
    let CaptureConfig {
        proxy_port,
        inbound_capture_port,
        inbound_tunnel_port,
        proxy_uid,
        proxy_gid,
        inbound_ports_include,
        inbound_ports_exclude,
        exclude_interfaces,
        outbound_ports_include,
        outbound_ports_exclude,
        kube_virt_interfaces,
        inbound_tproxy_mark,
        inbound_tproxy_route_table,
        ..
    } = cfg;
    assert_eq!((proxy_port, inbound_capture_port, inbound_tunnel_port), (Some(1), Some(2), Some(3)));
    assert_eq!((proxy_uid, proxy_gid), (Some(vec![4]), Some(vec![5])));
    assert_eq!(
        (inbound_ports_include, inbound_ports_exclude),
        (Some(PortList::List(vec![6])), Some(PortList::List(vec![7])))
    );
    assert_eq!(
        (outbound_ports_include, outbound_ports_exclude),
        (Some(PortList::List(vec![8])), Some(PortList::List(vec![9])))
    );
    assert_eq!((exclude_interfaces, kube_virt_interfaces), (Some(vec!["eth1".into()]), Some(vec!["v1".into()])));
    assert_eq!((inbound_tproxy_mark, inbound_tproxy_route_table), (Some(10), Some(11)));
}

#[test]
fn malformed_values_name_the_flag_and_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["-b", "80,abc"], r#"invalid value for -b/--istio-inbound-ports: "80,abc": "abc" is not a port"#),
        (&["-p", "70000"], r#"invalid value for -p/--envoy-port: "70000": "70000" is not a port"#),
        (&["-i", "bad"], r#"invalid value for -i/--istio-service-cidr: "bad": "bad" is not a CIDR"#),
        (
            &["-x", "10.0.0.0/33"],
            r#"invalid value for -x/--istio-service-exclude-cidr: "10.0.0.0/33": "10.0.0.0/33" is not a CIDR"#,
        ),
        (
            &["-m", "MAGIC"],
            r#"invalid value for -m/--istio-inbound-interception-mode: "MAGIC": "MAGIC" is not an interception mode (REDIRECT, TPROXY or NONE)"#,
        ),
        (&["-u", "root"], r#"invalid value for -u/--proxy-uid: "root": "root" is not a numeric id"#),
        (
            &["--probe-timeout=soon"],
            r#"invalid value for --probe-timeout: "soon": "soon" is not a duration (e.g. 5s, 500ms, 1m30s)"#,
        ),
        (&["-p"], "flag -p/--envoy-port needs a value"),
        (&["--bogus"], r#"unknown flag "--bogus""#),
        (&["-Z", "1"], r#"unknown flag "-Z""#),
        (&["stray"], r#"unexpected argument "stray": istio-iptables takes only flags"#),
    ];
    for (input, want) in cases {
        let err = CaptureConfig::from_args(input).unwrap_err();
        assert_eq!(err.to_string(), *want, "{input:?}");
    }
}

#[test]
fn environment_fills_in_and_flags_win() {
    let env: HashMap<&str, &str> = HashMap::from([
        ("ENVOY_PORT", "16001"),
        ("INBOUND_CAPTURE_PORT", "16006"),
        ("ISTIO_META_DNS_CAPTURE", "true"),
        ("INVALID_DROP", "true"),
        ("ISTIO_DUAL_STACK", "1"),
        ("ISTIO_OUTBOUND_OWNER_GROUPS", "java,202"),
        ("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "888,ftp"),
        ("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", "127.0.0.1/8"),
        ("FORCE_IPTABLES_BINARY", "iptables-nft"),
    ]);
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let cfg = CaptureConfig::from_args_and_env(&["-p", "15001"], lookup).unwrap();
    assert_eq!(cfg.proxy_port, Some(15001), "the flag wins over ENVOY_PORT");
    assert_eq!(cfg.inbound_capture_port, Some(16006));
    assert!(cfg.redirect_dns && cfg.drop_invalid && cfg.dual_stack);
    assert_eq!(cfg.outbound_owner_groups, Some(vec!["java".into(), "202".into()]));
    assert_eq!(cfg.outbound_owner_groups_exclude, Some(vec!["888".into(), "ftp".into()]));
    assert_eq!(cfg.effective_loopback_cidr().to_string(), "127.0.0.1/8");
    assert_eq!(cfg.force_iptables_binary.as_deref(), Some("iptables-nft"));
    assert_eq!(
        cfg.to_env(),
        vec![
            ("ISTIO_OUTBOUND_OWNER_GROUPS", "java,202".to_string()),
            ("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "888,ftp".to_string()),
            ("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", "127.0.0.1/8".to_string()),
        ]
    );
}

#[test]
fn bad_environment_names_the_variable() {
    let err = CaptureConfig::from_args_and_env(&[] as &[&str], |k| (k == "INBOUND_PORTS").then(String::new))
        .map(|_| ())
        .err();
    assert_eq!(err, None, "unrelated variables are ignored");
    let err = CaptureConfig::from_args_and_env(&[] as &[&str], |k| (k == "ISTIO_INBOUND_PORTS").then(|| "x".into()))
        .unwrap_err();
    assert_eq!(err.to_string(), r#"invalid value for env ISTIO_INBOUND_PORTS: "x": "x" is not a port"#);
    let err = CaptureConfig::from_args_and_env(&[] as &[&str], |k| {
        (k == "ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR").then(|| "::1/128".into())
    })
    .unwrap_err();
    assert!(err.to_string().contains("is not an IPv4 CIDR"), "{err}");
}

#[test]
fn defaults_are_istio_iptables_defaults() {
    let cfg = CaptureConfig::default();
    assert_eq!(cfg.effective_proxy_port(), 15001);
    assert_eq!(cfg.effective_inbound_capture_port(), 15006);
    assert_eq!(cfg.effective_inbound_tunnel_port(), 15008);
    assert_eq!(cfg.effective_proxy_uids(), vec![1337]);
    assert_eq!(cfg.effective_proxy_gids(), vec![1337]);
    assert_eq!(cfg.effective_interception_mode(), InterceptionMode::Redirect);
    assert_eq!((cfg.effective_tproxy_mark(), cfg.effective_tproxy_route_table()), (1337, 133));
    assert_eq!(cfg.effective_probe_timeout(), Duration::from_secs(5));
    assert_eq!(cfg.effective_iptables_probe_port(), 15002);
    assert_eq!(cfg.effective_loopback_cidr().to_string(), "127.0.0.1/32");
    assert!(cfg.to_args().is_empty());
    // GIDs follow UIDs unless given.
    let cfg = CaptureConfig::from_args(&["-u", "3,4"]).unwrap();
    assert_eq!(cfg.effective_proxy_gids(), vec![3, 4]);
}

#[test]
fn list_values_tolerate_spaces_and_trailing_commas() {
    let cfg = CaptureConfig::from_args(&["-d", "6000,7000,", "-i", "10.0.0.0/8, 192.168.0.0/16"]).unwrap();
    assert_eq!(cfg.inbound_ports_exclude, Some(PortList::List(vec![6000, 7000])));
    assert_eq!(cfg.to_args(), args(&["-i", "10.0.0.0/8,192.168.0.0/16", "-d", "6000,7000"]));
}

#[test]
fn outbound_verdicts_follow_istio_output_chain() {
    let cfg = CaptureConfig::from_args(&["-i", "10.0.0.0/8", "-x", "10.1.0.0/16", "-o", "3306", "-q", "9000"]).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(cfg.captures_outbound(1000, 1000, ip("10.2.3.4"), 80), OutboundVerdict::Captured);
    assert_eq!(cfg.captures_outbound(1337, 1000, ip("10.2.3.4"), 80), OutboundVerdict::BypassProxyUid(1337));
    assert_eq!(cfg.captures_outbound(1000, 1337, ip("10.2.3.4"), 80), OutboundVerdict::BypassProxyGid(1337));
    assert_eq!(cfg.captures_outbound(1000, 1000, ip("10.2.3.4"), 3306), OutboundVerdict::BypassExcludedPort(3306));
    assert_eq!(
        cfg.captures_outbound(1000, 1000, ip("10.1.3.4"), 80),
        OutboundVerdict::BypassExcludedCidr("10.1.0.0/16".parse().unwrap())
    );
    assert_eq!(cfg.captures_outbound(1000, 1000, ip("8.8.8.8"), 80), OutboundVerdict::BypassNotIncluded);
    assert_eq!(cfg.captures_outbound(1000, 1000, ip("8.8.8.8"), 9000), OutboundVerdict::Captured);
}

#[test]
fn inbound_capture_follows_include_and_exclude() {
    let cfg = CaptureConfig::from_args(ISTIO_DEFAULT).unwrap();
    assert!(cfg.captures_inbound(8080));
    assert!(!cfg.captures_inbound(15020));
    assert!(!cfg.captures_inbound(15008), "the tunnel port is never captured");
    let cfg = CaptureConfig::from_args(&["-b", "80,443"]).unwrap();
    assert!(cfg.captures_inbound(443) && !cfg.captures_inbound(8080));
    assert!(!CaptureConfig::from_args(&["-b", ""]).unwrap().captures_inbound(80));
}

#[test]
fn cidr_contains_and_keeps_host_bits() {
    let c: Cidr = "10.96.0.2/24".parse().unwrap();
    assert_eq!(c.to_string(), "10.96.0.2/24");
    assert!(c.contains("10.96.0.200".parse().unwrap()));
    assert!(!c.contains("10.96.1.1".parse().unwrap()));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("1.2.3.4".parse().unwrap()));
    assert!(!all.contains("::1".parse().unwrap()));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
    assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
}

#[test]
fn go_durations() {
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
    assert!(parse_duration("").is_err() && parse_duration("5").is_err() && parse_duration("5x").is_err());
    for d in [Duration::from_secs(5), Duration::from_millis(250), Duration::from_secs(3661), Duration::ZERO] {
        assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
    }
}

fn arb_cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| Cidr { addr: IpAddr::from(a), prefix: p }),
        (any::<[u16; 8]>(), 0u8..=128).prop_map(|(a, p)| Cidr { addr: IpAddr::from(a), prefix: p }),
    ]
}

fn arb_ports() -> impl Strategy<Value = Option<PortList>> {
    prop_oneof![
        Just(None),
        Just(Some(PortList::All)),
        proptest::collection::vec(any::<u16>(), 0..4).prop_map(|v| Some(PortList::List(v)))
    ]
}

fn arb_cidrs() -> impl Strategy<Value = Option<CidrList>> {
    prop_oneof![
        Just(None),
        Just(Some(CidrList::All)),
        proptest::collection::vec(arb_cidr(), 0..3).prop_map(|v| Some(CidrList::List(v)))
    ]
}

fn arb_names() -> impl Strategy<Value = Option<Vec<String>>> {
    proptest::option::of(proptest::collection::vec("[a-z][a-z0-9]{0,6}", 0..3))
}

prop_compose! {
    fn arb_config()(
        ports in (any::<Option<u16>>(), any::<Option<u16>>(), any::<Option<u16>>(), any::<Option<u16>>()),
        ids in (proptest::option::of(proptest::collection::vec(any::<u32>(), 1..3)), proptest::option::of(proptest::collection::vec(any::<u32>(), 1..3))),
        mode in proptest::option::of(prop_oneof![Just(InterceptionMode::Redirect), Just(InterceptionMode::Tproxy), Just(InterceptionMode::None)]),
        tproxy in (any::<Option<u32>>(), any::<Option<u32>>()),
        port_lists in (arb_ports(), arb_ports(), arb_ports(), arb_ports()),
        cidr_lists in (arb_cidrs(), arb_cidrs()),
        ifaces in (arb_names(), arb_names()),
        switches in proptest::collection::vec(any::<bool>(), 12),
        timeout in proptest::option::of(0u64..100_000),
        level in proptest::option::of("[a-z]+:[a-z]+"),
        binary in proptest::option::of("iptables-(legacy|nft)"),
    ) -> CaptureConfig {
        CaptureConfig {
            proxy_port: ports.0,
            inbound_capture_port: ports.1,
            inbound_tunnel_port: ports.2,
            iptables_probe_port: ports.3,
            proxy_uid: ids.0,
            proxy_gid: ids.1,
            interception_mode: mode,
            inbound_tproxy_mark: tproxy.0,
            inbound_tproxy_route_table: tproxy.1,
            inbound_ports_include: port_lists.0,
            inbound_ports_exclude: port_lists.1,
            outbound_ports_include: port_lists.2,
            outbound_ports_exclude: port_lists.3,
            outbound_ip_ranges_include: cidr_lists.0,
            outbound_ip_ranges_exclude: cidr_lists.1,
            kube_virt_interfaces: ifaces.0,
            exclude_interfaces: ifaces.1,
            dry_run: switches[0],
            redirect_dns: switches[1],
            capture_all_dns: switches[2],
            drop_invalid: switches[3],
            dual_stack: switches[4],
            skip_rule_apply: switches[5],
            run_validation: switches[6],
            reconcile: switches[7],
            cleanup_only: switches[8],
            force_apply: switches[9],
            native_nftables: switches[10],
            log_as_json: switches[11],
            probe_timeout: timeout.map(Duration::from_millis),
            force_iptables_binary: binary,
            log_output_level: level,
            outbound_owner_groups: None,
            outbound_owner_groups_exclude: None,
            outbound_ipv4_loopback_cidr: None,
        }
    }
}

proptest! {
    #[test]
    fn render_then_parse_is_lossless(cfg in arb_config()) {
        let rendered = cfg.to_args();
        let parsed = CaptureConfig::from_args(&rendered).unwrap();
        prop_assert_eq!(&parsed, &cfg);
        prop_assert_eq!(parsed.to_args(), rendered);
    }

    #[test]
    fn parsing_arbitrary_arguments_never_panics(words in proptest::collection::vec("-{0,2}[a-z_=0-9,.*/:-]{0,12}", 0..8)) {
        let _ = CaptureConfig::from_args(&words);
    }
}

#[test]
fn switches_render_in_istio_template_order() {
    // Istio's template writes --log_as_json, then --run-validation --skip-rule-apply (CNI) or
    // --force-apply, then --native-nftables.
    let cfg =
        CaptureConfig::from_args(&["--native-nftables", "--skip-rule-apply", "--log_as_json", "--run-validation"])
            .unwrap();
    assert_eq!(cfg.to_args(), args(&["--log_as_json", "--run-validation", "--skip-rule-apply", "--native-nftables"]));
}
