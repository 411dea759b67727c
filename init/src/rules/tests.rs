use super::*;

fn cfg(args: &[&str]) -> CaptureConfig {
    CaptureConfig::from_args(args).expect("valid test args")
}

fn ipt(set: &RuleSet, family: Family) -> String {
    iptables::restore_input(set, family)
}

#[test]
fn default_sidecar_args_capture_inbound_except_excluded_ports() {
    let set = build(
        &cfg(&[
            "istio-iptables",
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
        ]),
        &Facts::default(),
    )
    .expect("renders");
    let text = ipt(&set, Family::V4);
    let excluded: Vec<&str> =
        text.lines().filter(|l| l.starts_with("-A ISTIO_INBOUND") && l.ends_with("RETURN")).collect();
    assert_eq!(excluded.len(), 4, "tunnel port + 3 excluded ports: {text}");
    // The catch-all comes after every exclusion.
    let pos = |needle: &str| text.find(needle).expect(needle);
    assert!(pos("--dport 15020 -j RETURN") < pos("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT"));
    assert!(text.trim_end().ends_with("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT"), "{text}");
    assert!(!text.contains("* mangle"));
}

#[test]
fn ipv6_rules_only_when_enabled() {
    let c = cfg(&["-i", "10.0.0.0/8,fd00::/8", "-x", "10.1.0.0/16"]);
    let off = build(&c, &Facts::default()).expect("renders");
    assert!(off.rules.iter().all(|r| r.family != Some(Family::V6)));
    assert!(!nft::transaction(&off).contains("ip6 "));
    let on = build(&c, &Facts { ipv6: true, ..Facts::default() }).expect("renders");
    let v6 = ipt(&on, Family::V6);
    assert!(v6.contains("-A ISTIO_OUTPUT -d fd00::/8 -j ISTIO_REDIRECT"), "{v6}");
    assert!(!v6.contains("10.0.0.0/8") && !v6.contains("10.1.0.0/16"), "{v6}");
    assert!(v6.contains("-s ::6/128") && v6.contains("! -d ::1/128"), "{v6}");
}

#[test]
fn tproxy_uses_mangle_marks_and_keeps_nat_outbound() {
    let set = build(&cfg(&["-m", "TPROXY", "-b", "*", "-d", "15090", "-i", "*"]), &Facts::default()).expect("renders");
    let text = ipt(&set, Family::V4);
    assert!(text.starts_with("* mangle\n-N ISTIO_DIVERT\n-N ISTIO_TPROXY\n-N ISTIO_INBOUND\n"), "{text}");
    assert!(text.contains("-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN"));
    assert!(text.contains("-j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006"));
    assert!(!text.contains("-A PREROUTING -p tcp -j ISTIO_INBOUND\n-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT"));
    let nft = nft::transaction(&set);
    assert!(nft.contains(
        "insert rule inet istio-proxy-mangle istio-inbound index 0 meta l4proto tcp mark 1337 counter return"
    ));
}

#[test]
fn nft_insert_into_an_empty_chain_is_an_add() {
    // TPROXY without inbound ports: the mark rules are inserted into an otherwise empty chain.
    let set = build(&cfg(&["-m", "TPROXY", "-b", ""]), &Facts::default()).expect("renders");
    let nft = nft::transaction(&set);
    assert!(nft.contains("add rule inet istio-proxy-mangle istio-inbound meta l4proto tcp mark 1337 counter return"));
    assert!(!nft.contains("insert rule inet istio-proxy-mangle istio-inbound index 2"), "{nft}");
}

#[test]
fn capture_all_dns_redirects_without_servers() {
    let set = build(&cfg(&["--redirect-dns", "--capture-all-dns"]), &Facts::default()).expect("renders");
    let text = ipt(&set, Family::V4);
    assert!(text.contains("-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -j REDIRECT --to-ports 15053"), "{text}");
    assert!(text.contains("-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-port 15053"));
    assert!(text.contains("* raw\n"));
    assert!(text.contains("-A ISTIO_INBOUND -p udp --sport 53 -j CT --zone 1"));
    // Without servers and without --capture-all-dns, DNS capture is off (as in Istio).
    let off = build(&cfg(&["--redirect-dns"]), &Facts::default()).expect("renders");
    assert!(!ipt(&off, Family::V4).contains("ISTIO_OUTPUT_DNS"));
}

#[test]
fn excluding_every_address_is_an_error_naming_the_flag() {
    let err = build(&cfg(&["-x", "*"]), &Facts::default()).expect_err("rejected");
    assert!(err.to_string().contains("-x/--istio-service-exclude-cidr"), "{err}");
    let err = build(&cfg(&["-o", "*"]), &Facts::default()).expect_err("rejected");
    assert!(err.to_string().contains("-o/--istio-local-outbound-ports-exclude"), "{err}");
}

#[test]
fn outbound_port_exclusions_come_first() {
    let set = build(&cfg(&["-o", "25,3306", "-i", "*"]), &Facts::default()).expect("renders");
    let text = ipt(&set, Family::V4);
    let after_jump = text.split("-A OUTPUT -j ISTIO_OUTPUT\n").nth(1).expect("output jump");
    assert!(
        after_jump.starts_with(
            "-A ISTIO_OUTPUT -p tcp --dport 25 -j RETURN\n-A ISTIO_OUTPUT -p tcp --dport 3306 -j RETURN\n"
        )
    );
}

#[test]
fn owner_group_include_and_exclude() {
    let inc = CaptureConfig::from_args_and_env(&[] as &[&str], |k| {
        (k == "ISTIO_OUTBOUND_OWNER_GROUPS").then(|| "java,202".to_owned())
    })
    .expect("parses");
    let text = ipt(&build(&inc, &Facts::default()).expect("renders"), Family::V4);
    assert!(text.contains("-A ISTIO_OUTPUT -m owner ! --gid-owner java -m owner ! --gid-owner 202 -j RETURN"));
    assert_eq!(owner_groups(&inc), vec!["java", "202"]);
}
