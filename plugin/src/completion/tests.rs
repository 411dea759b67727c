use super::*;

fn words(line: &str) -> Vec<String> {
    // The word under the cursor is empty after a trailing space.
    let mut w: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    if line.ends_with(' ') || line.is_empty() {
        w.push(String::new());
    }
    w
}

fn done(line: &str) -> Completion {
    match plan(&words(line)) {
        Plan::Done(c) => c,
        Plan::Lookup(l) => panic!("{line:?}: wanted candidates, got a lookup {l:?}"),
    }
}

fn values(line: &str) -> Vec<String> {
    done(line).candidates.into_iter().map(|c| c.value).collect()
}

fn looked_up(line: &str) -> Lookup {
    match plan(&words(line)) {
        Plan::Lookup(l) => *l,
        Plan::Done(c) => panic!("{line:?}: wanted a lookup, got {c:?}"),
    }
}

#[test]
fn subcommands_by_prefix() {
    assert_eq!(values("ex"), ["explain"]);
    let all = values("");
    for sub in ["proxy-status", "explain", "inject", "check-inject", "completion", "version"] {
        assert!(all.contains(&sub.to_owned()), "{sub} missing from {all:?}");
    }
    let c = done("prox");
    assert_eq!(c.directive, DIRECTIVE_NO_FILE_COMP);
    assert_eq!(c.candidates.len(), 1);
    assert!(c.candidates[0].description.starts_with("Show the xDS sync status"), "{:?}", c.candidates[0]);
}

#[test]
fn flags_of_the_subcommand() {
    let f = values("explain --ad");
    assert_eq!(f, ["--admin-via", "--admin-port"]);
    let all = values("proxy-status --");
    for flag in ["--all-namespaces", "--kubeconfig", "--context", "--namespace", "--request-timeout", "--as-group"] {
        assert!(all.contains(&flag.to_owned()), "{flag} missing from {all:?}");
    }
    // `-` alone also offers the shorthands, like cobra.
    let dash = values("proxy-status -");
    assert!(dash.contains(&"-A".to_owned()) && dash.contains(&"-n".to_owned()), "{dash:?}");
    // A flag given once is not offered again; a repeatable one is.
    let again = values("explain pod/foo --context c --");
    assert!(!again.contains(&"--context".to_owned()), "{again:?}");
    assert!(again.contains(&"--header".to_owned()), "{again:?}");
}

#[test]
fn value_enums_in_each_form() {
    assert_eq!(values("explain pod/foo -o "), ["text", "json", "yaml"]);
    assert_eq!(values("proxy-status -o j"), ["json"]);
    assert_eq!(values("explain pod/foo --output=y"), ["--output=yaml"]);
    assert_eq!(values("explain pod/foo -oj"), ["-ojson"]);
    assert_eq!(values("proxy-status --admin-via "), ["port-forward", "proxy"]);
    assert_eq!(values("completion "), ["bash", "zsh", "fish", "powershell"]);
    assert_eq!(values("inject -f x.yaml --native-sidecars d"), ["disabled"]);
}

#[test]
fn pods_and_namespaces_are_looked_up_with_the_cluster_flags() {
    let l = looked_up("explain pod/");
    assert_eq!((l.source, l.prefix.as_str(), l.typed.as_str()), (Source::Pods, "pod/", ""));
    let l = looked_up("explain --kubeconfig /k --context=c -n foo pod/fo");
    assert_eq!((l.prefix.as_str(), l.typed.as_str()), ("pod/", "fo"));
    assert_eq!(l.cluster.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
    assert_eq!(l.cluster.context.as_deref(), Some("c"));
    assert_eq!(l.cluster.namespace.as_deref(), Some("foo"));
    let l = looked_up("proxy-status -A ");
    assert_eq!((l.source, l.all_namespaces), (Source::ProxyPods, true));
    let l = looked_up("proxy-status -n ku");
    assert_eq!((l.source, l.prefix.as_str(), l.typed.as_str()), (Source::Namespaces, "", "ku"));
    let l = looked_up("explain pod/foo --namespace=ku");
    assert_eq!((l.source, l.prefix.as_str(), l.typed.as_str()), (Source::Namespaces, "--namespace=", "ku"));
    let l = looked_up("proxy-status -nku");
    assert_eq!((l.source, l.prefix.as_str(), l.typed.as_str()), (Source::Namespaces, "-n", "ku"));
    assert_eq!(looked_up("explain pod/foo --context ").source, Source::Contexts);
    // A cluster flag value its parser rejects is left out, the others still count.
    let l = looked_up("explain --request-timeout soon -n foo pod/");
    assert_eq!((l.cluster.request_timeout, l.cluster.namespace.as_deref()), (None, Some("foo")));
}

#[test]
fn files_only_where_a_file_is_meant() {
    assert_eq!(done("explain --file ").directive, DIRECTIVE_DEFAULT);
    assert_eq!(done("inject -f ").directive, DIRECTIVE_DEFAULT);
    assert_eq!(done("explain pod/foo --to ").directive, DIRECTIVE_NO_FILE_COMP);
    // One pod only: nothing after it.
    assert_eq!(done("explain pod/foo ").candidates, []);
    assert_eq!(done("version ").directive, DIRECTIVE_NO_FILE_COMP);
}

/// `--wait` takes its value only as `--wait=2m`: the next word is the POD, not the timeout.
#[test]
fn optional_value_flags_do_not_eat_the_next_word() {
    assert_eq!(looked_up("proxy-status --wait ").source, Source::ProxyPods);
}

#[test]
fn finish_filters_sorts_and_prefixes() {
    let l = looked_up("explain pod/b");
    let c = finish(&l, vec!["bar".into(), "foo".into(), "baz".into(), "bar".into()]);
    assert_eq!(c.candidates.iter().map(|c| c.value.as_str()).collect::<Vec<_>>(), ["pod/bar", "pod/baz"]);
    assert_eq!(c.directive, DIRECTIVE_NO_FILE_COMP);
    let pods = [("foo".to_owned(), "a".to_owned()), ("bar".to_owned(), "b".to_owned())];
    assert_eq!(pod_values(Source::ProxyPods, true, &pods), ["a.foo", "b.bar"]);
    assert_eq!(pod_values(Source::ProxyPods, false, &pods), ["a", "b"]);
    assert_eq!(pod_values(Source::Pods, true, &pods), ["a", "b"]);
}

#[test]
fn renders_cobras_protocol() {
    let c = Completion {
        candidates: vec![
            Candidate { value: "explain".into(), description: "Explain\tit".into() },
            Candidate { value: "pod/foo".into(), description: String::new() },
        ],
        directive: DIRECTIVE_NO_FILE_COMP,
    };
    assert_eq!(render(&c), "explain\tExplain it\npod/foo\n:4\n");
    assert_eq!(render(&Completion::files()), ":0\n");
}

#[test]
fn hook_without_a_lookup_prints_the_protocol() {
    let mut out = Vec::new();
    assert_eq!(hook_main(["proxy-status".into(), "-o".into(), "w".into()], &mut out), crate::exit::OK);
    assert_eq!(String::from_utf8_lossy(&out), "wide\tThe table plus the proxies' NACK messages\n:4\n");
}

#[test]
fn scripts_name_the_binary() {
    for (shell, marker) in [
        (Shell::Bash, "complete -F _kubectl_mesh "),
        (Shell::Zsh, "#compdef kubectl-mesh"),
        (Shell::Fish, "complete -c kubectl-mesh"),
        (Shell::Powershell, "Register-ArgumentCompleter"),
    ] {
        let mut out = Vec::new();
        script(shell, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(marker), "{shell:?} script lacks {marker:?}");
        assert!(text.contains("proxy-status"), "{shell:?} script lacks the subcommands");
    }
}
