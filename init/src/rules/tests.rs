use super::*;

fn cfg(args: &[&str]) -> CaptureConfig {
    CaptureConfig::from_args(args).expect("valid test args")
}

fn ipt(set: &RuleSet, family: Family) -> String {
    iptables::restore_input(set, family)
}

#[test]
fn default_sidecar_args_capture_inbound_except_excluded_ports() {
    let set = build(&cfg(&mesh_core::capture::ISTIO_DEFAULT_INIT_ARGS), &Facts::default()).expect("renders");
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

mod properties {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    fn args() -> impl Strategy<Value = Vec<String>> {
        let opt = |flag: &'static str, values: &'static [&'static str]| {
            proptest::option::of(proptest::sample::select(values))
                .prop_map(move |v| v.map(|v| vec![flag.to_owned(), v.to_owned()]).unwrap_or_default())
        };
        (
            opt("-m", &["REDIRECT", "TPROXY"]),
            opt("-b", &["*", "", "80,8080", "9090"]),
            opt("-d", &["15090,15021", "8081"]),
            opt("-i", &["*", "", "10.0.0.0/8,fd00::/8", "2001:db8::/32"]),
            opt("-x", &["1.1.0.0/16", "fd01::/16,10.9.0.0/16"]),
            opt("-o", &["25", "1,2"]),
            opt("-q", &["3306"]),
            opt("-k", &["eth1", "eth1,eth2"]),
            opt("-c", &["eth9"]),
            opt("-u", &["1337", "3,4"]),
            proptest::sample::subsequence(vec!["--redirect-dns", "--capture-all-dns", "--drop-invalid"], 0..=3),
        )
            .prop_map(|(m, b, d, i, x, o, q, k, c, u, switches)| {
                let mut all: Vec<String> = [m, b, d, i, x, o, q, k, c, u].concat();
                all.extend(switches.into_iter().map(str::to_owned));
                all
            })
    }

    proptest! {
        /// Whatever the flags, every jump target and every inserted-into chain exists, and every
        /// insert position is valid when the text is applied in order.
        #[test]
        fn rendered_rules_are_self_consistent(args in args(), ipv6 in any::<bool>(), dns in any::<bool>()) {
            let cfg = CaptureConfig::from_args(&args).expect("valid flags");
            let facts = Facts {
                ipv6,
                dns_servers_v4: if dns { vec!["10.96.0.10".into()] } else { vec![] },
                dns_servers_v6: if dns && ipv6 { vec!["fd00::a".into()] } else { vec![] },
            };
            let set = build(&cfg, &facts).expect("renders");
            for family in set.families() {
                let text = iptables::restore_input(&set, family);
                let mut created: HashSet<String> = HashSet::new();
                let mut counts: HashMap<String, u32> = HashMap::new();
                for line in text.lines() {
                    if line.starts_with("* ") {
                        created.clear();
                        counts.clear();
                    } else if let Some(c) = line.strip_prefix("-N ") {
                        created.insert(c.to_owned());
                    } else if line.starts_with("-A ") || line.starts_with("-I ") {
                        let words: Vec<&str> = line.split(' ').collect();
                        let chain = words[1];
                        prop_assert!(chain == "PREROUTING" || chain == "OUTPUT" || created.contains(chain), "{line}");
                        if let Some(target) = words.iter().position(|w| *w == "-j").map(|i| words[i + 1]) {
                            prop_assert!(!target.starts_with("ISTIO_") || created.contains(target), "{line}");
                        }
                        let n = counts.entry(chain.to_owned()).or_default();
                        if line.starts_with("-I ") {
                            let pos: u32 = words[2].parse().expect("position");
                            prop_assert!(pos >= 1 && pos <= *n + 1, "{line} with {n} rules");
                        }
                        *n += 1;
                    }
                }
            }
            let nft = nft::transaction(&set);
            let declared: HashSet<(String, String)> = nft
                .lines()
                .filter_map(|l| l.strip_prefix("add chain inet "))
                .map(|l| {
                    let w: Vec<&str> = l.split(' ').collect();
                    (w[0].to_owned(), w[1].to_owned())
                })
                .collect();
            for line in nft.lines().filter(|l| l.contains(" rule inet ")) {
                let w: Vec<&str> = line.split(' ').collect();
                let (table, chain) = (w[3].to_owned(), w[4].to_owned());
                prop_assert!(declared.contains(&(table.clone(), chain)), "{line}");
                if let Some(i) = w.iter().position(|x| *x == "jump") {
                    prop_assert!(declared.contains(&(table, w[i + 1].to_owned())), "{line}");
                }
                prop_assert!(ipv6 || !line.contains("ip6 "), "IPv6 rule while IPv6 is off: {line}");
            }
        }
    }
}
