//! The krew plugin manifest `plugins/mesh.yaml`, checked against krew's documented schema
//! (`krew.googlecontainertools.github.com/v1alpha2`, kind `Plugin`) and the release layout in
//! docs/install.md:
//! - every field is krew's, typed as krew types it; unknown keys at any level are errors;
//! - `metadata.name` is the plugin binary's name after `kubectl-`, `spec.version` is `v` + the
//!   workspace version;
//! - the platforms cover exactly linux/darwin × amd64/arm64, once each, with the documented archive
//!   URI, a 64-hex sha256 (placeholders until a release fills them), and `bin` among the installed files;
//! - the executables the manifest installs are exactly the plugin crate's binaries.
//!
//! The validator is tested on broken manifests too, so a wrong manifest cannot pass.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::Deserialize;

/// krew's manifest API version.
const API_VERSION: &str = "krew.googlecontainertools.github.com/v1alpha2";
/// The platforms the manifest must cover, each exactly once.
const PLATFORMS: [(&str, &str); 4] = [("darwin", "amd64"), ("darwin", "arm64"), ("linux", "amd64"), ("linux", "arm64")];
/// krew's guideline for `shortDescription`.
const SHORT_DESCRIPTION_MAX: usize = 50;
/// krew's guideline for the width of `description` and `caveats`.
const LINE_MAX: usize = 80;

/// A krew `Plugin` (krew `pkg/index/types.go`); unknown fields are errors.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

/// The manifest's `metadata`: krew reads only the name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

/// krew's `PluginSpec`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    version: String,
    homepage: String,
    short_description: String,
    description: String,
    caveats: Option<String>,
    platforms: Vec<Platform>,
}

/// krew's `Platform`: one archive for the platforms its selector matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Platform {
    selector: Selector,
    uri: String,
    sha256: String,
    files: Vec<FileOperation>,
    bin: String,
}

/// A label selector over `os` and `arch` (this manifest uses `matchLabels` only).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

/// krew's `FileOperation`: copy `from` (in the archive) to `to` (in the install directory).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOperation {
    from: String,
    to: String,
}

/// What the manifest must agree with: the workspace version and the plugin crate's binaries.
struct Expected {
    version: String,
    bins: BTreeSet<String>,
}

/// The binary kubectl runs for a krew plugin name (`foo-bar` is `kubectl-foo_bar`).
fn plugin_binary(name: &str) -> String {
    format!("kubectl-{}", name.replace('-', "_"))
}

/// The release archive URI docs/install.md documents.
fn archive_uri(homepage: &str, version: &str, os: &str, arch: &str) -> String {
    format!("{homepage}/releases/download/v{version}/kubectl-mesh_v{version}_{os}_{arch}.tar.gz")
}

/// Where a file operation puts its file, relative to the install directory (`to` is a directory
/// when it is `.` or ends in `/`).
fn installed_path(op: &FileOperation) -> String {
    let base = op.from.rsplit('/').next().unwrap_or(&op.from);
    let to = op.to.trim_start_matches("./");
    if to.is_empty() || to == "." {
        base.to_owned()
    } else if let Some(dir) = to.strip_suffix('/') {
        format!("{dir}/{base}")
    } else {
        to.to_owned()
    }
}

/// Whether a path stays inside the directory it is relative to.
fn is_relative_inside(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|part| part == "..")
}

/// Every problem of a manifest text, each naming the field and its value; empty when it is valid.
fn validate(text: &str, expected: &Expected) -> Vec<String> {
    match serde_saphyr::from_str::<Manifest>(text) {
        Ok(manifest) => check(&manifest, expected),
        Err(error) => vec![format!("not a krew Plugin manifest: {error}")],
    }
}

/// The field-level checks of a parsed manifest.
fn check(manifest: &Manifest, expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest.api_version != API_VERSION {
        problems.push(format!("apiVersion is {:?}, krew reads {API_VERSION:?}", manifest.api_version));
    }
    if manifest.kind != "Plugin" {
        problems.push(format!("kind is {:?}, krew reads \"Plugin\"", manifest.kind));
    }
    let name = &manifest.metadata.name;
    let name_ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !name_ok {
        problems.push(format!("metadata.name {name:?} is not a lowercase name of letters, digits and '-'"));
    }
    let binary = plugin_binary(name);
    if !expected.bins.contains(&binary) {
        problems.push(format!(
            "metadata.name {name:?} means binary {binary:?}, but the plugin crate builds {:?}",
            expected.bins
        ));
    }

    let spec = &manifest.spec;
    let version = format!("v{}", expected.version);
    if spec.version != version {
        problems.push(format!("spec.version is {:?}, the workspace version makes it {version:?}", spec.version));
    }
    if !spec.homepage.starts_with("https://") {
        problems.push(format!("spec.homepage {:?} is not an https URL", spec.homepage));
    }
    let short = spec.short_description.trim();
    if short.is_empty() || short.contains('\n') || short.chars().count() > SHORT_DESCRIPTION_MAX {
        problems.push(format!(
            "spec.shortDescription {:?} must be one non-empty line of at most {SHORT_DESCRIPTION_MAX} characters",
            spec.short_description
        ));
    }
    if spec.description.trim().is_empty() {
        problems.push("spec.description is empty".to_owned());
    }
    for (field, text) in [("description", Some(&spec.description)), ("caveats", spec.caveats.as_ref())] {
        for line in text.into_iter().flat_map(|text| text.lines()) {
            if line.chars().count() > LINE_MAX {
                problems.push(format!("spec.{field} has a line over {LINE_MAX} characters: {line:?}"));
            }
        }
    }

    let mut seen = BTreeSet::new();
    for (index, platform) in spec.platforms.iter().enumerate() {
        problems.extend(check_platform(index, platform, spec, &binary, expected, &mut seen));
    }
    let wanted: BTreeSet<(String, String)> =
        PLATFORMS.iter().map(|(os, arch)| ((*os).to_owned(), (*arch).to_owned())).collect();
    let missing: Vec<_> = wanted.difference(&seen).map(|(os, arch)| format!("{os}/{arch}")).collect();
    if !missing.is_empty() {
        problems.push(format!("spec.platforms has no platform for {}", missing.join(", ")));
    }
    problems
}

/// The checks of `spec.platforms[index]`; records its os/arch pair in `seen`.
fn check_platform(
    index: usize,
    platform: &Platform,
    spec: &Spec,
    binary: &str,
    expected: &Expected,
    seen: &mut BTreeSet<(String, String)>,
) -> Vec<String> {
    let field = format!("spec.platforms[{index}]");
    let mut problems = Vec::new();
    let labels = &platform.selector.match_labels;
    let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    if keys != ["arch", "os"] {
        problems.push(format!("{field}.selector.matchLabels has keys {keys:?}, want exactly os and arch"));
    }
    let os = labels.get("os").map(String::as_str).unwrap_or_default();
    let arch = labels.get("arch").map(String::as_str).unwrap_or_default();
    if !PLATFORMS.contains(&(os, arch)) {
        problems.push(format!("{field}.selector matches os={os:?} arch={arch:?}, not one of {PLATFORMS:?}"));
    } else if !seen.insert((os.to_owned(), arch.to_owned())) {
        problems.push(format!("{field}.selector repeats os={os:?} arch={arch:?}"));
    }

    let uri = &platform.uri;
    if !uri.starts_with("https://") {
        problems.push(format!("{field}.uri {uri:?} is not an https URL"));
    }
    for part in [spec.version.as_str(), os, arch] {
        if !uri.contains(part) {
            problems.push(format!("{field}.uri {uri:?} does not contain {part:?}"));
        }
    }
    let documented = archive_uri(&spec.homepage, &expected.version, os, arch);
    if *uri != documented {
        problems.push(format!("{field}.uri is {uri:?}, the documented release layout makes it {documented:?}"));
    }
    let sha = &platform.sha256;
    if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        problems.push(format!("{field}.sha256 {sha:?} is not 64 lowercase hex digits"));
    }

    if platform.files.is_empty() {
        problems.push(format!("{field}.files is empty"));
    }
    for (file_index, op) in platform.files.iter().enumerate() {
        for (key, path) in [("from", &op.from), ("to", &op.to)] {
            if !is_relative_inside(path) {
                problems.push(format!(
                    "{field}.files[{file_index}].{key} {path:?} is not a relative path inside the archive"
                ));
            }
        }
    }
    let installed: BTreeSet<String> = platform.files.iter().map(installed_path).collect();
    if platform.bin != binary {
        problems.push(format!("{field}.bin is {:?}, metadata.name makes it {binary:?}", platform.bin));
    }
    if !installed.contains(platform.bin.trim_start_matches("./")) {
        problems.push(format!("{field}.bin {:?} is not among the installed files {installed:?}", platform.bin));
    }
    if !installed.contains("LICENSE") {
        problems.push(format!("{field}.files do not install LICENSE (krew's index requires the license)"));
    }
    let executables: BTreeSet<String> = installed
        .iter()
        .filter(|path| path.starts_with("kubectl-") || path.starts_with("kubectl_complete-"))
        .cloned()
        .collect();
    if executables != expected.bins {
        problems.push(format!(
            "{field}.files install the executables {executables:?}, the plugin crate builds {:?}",
            expected.bins
        ));
    }
    problems
}

/// The `[[bin]]` names of a Cargo.toml (the `name = "..."` lines of its `[[bin]]` tables).
fn cargo_bins(cargo_toml: &str) -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    let mut in_bin = false;
    for line in cargo_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(value) = line.strip_prefix("name").map(str::trim_start)
            && let Some(value) = value.strip_prefix('=')
        {
            bins.insert(value.trim().trim_matches('"').to_owned());
        }
    }
    bins
}

/// What the repository's manifest must agree with.
fn repository_expectations() -> Result<Expected> {
    let path = mesh_test_data::repo_root().join("plugin/Cargo.toml");
    let cargo_toml = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // mesh-tests takes the workspace version, like the plugin.
    Ok(Expected { version: env!("CARGO_PKG_VERSION").to_owned(), bins: cargo_bins(&cargo_toml) })
}

#[test]
fn repository_manifest_follows_krews_schema_and_the_release_layout() -> Result<()> {
    let path = mesh_test_data::repo_root().join("plugins/mesh.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let expected = repository_expectations()?;
    assert!(expected.bins.contains("kubectl-mesh"), "plugin/Cargo.toml builds {:?}", expected.bins);
    let problems = validate(&text, &expected);
    assert!(problems.is_empty(), "{} is not a valid krew manifest:\n- {}", path.display(), problems.join("\n- "));
    Ok(())
}

#[test]
fn cargo_bins_reads_only_bin_tables() {
    let toml = "[package]\nname = \"kubectl-mesh\"\n[lib]\nname = \"kubectl_mesh\"\n[[bin]]\nname = \"kubectl-mesh\"\n\
                path = \"src/main.rs\"\n[[bin]]\nname = \"kubectl_complete-mesh\"\n[dependencies]\nname = \"x\"\n";
    let bins: Vec<String> = cargo_bins(toml).into_iter().collect();
    assert_eq!(bins, ["kubectl-mesh", "kubectl_complete-mesh"]);
}

/// A valid manifest for version 1.2.3 with the given files per platform (the validator's baseline).
fn good_manifest(files: &str) -> String {
    let mut text = format!(
        "apiVersion: {API_VERSION}\nkind: Plugin\nmetadata:\n  name: mesh\nspec:\n  version: v1.2.3\n  \
         homepage: https://example.invalid/mesh\n  shortDescription: Short\n  description: |\n    Long.\n  platforms:\n"
    );
    for (os, arch) in PLATFORMS {
        let uri = archive_uri("https://example.invalid/mesh", "1.2.3", os, arch);
        text.push_str(&format!(
            "  - selector:\n      matchLabels:\n        os: {os}\n        arch: {arch}\n    uri: {uri}\n    \
             sha256: \"{}\"\n    files:\n{files}    bin: kubectl-mesh\n",
            "ab".repeat(32)
        ));
    }
    text
}

const FILES: &str = "    - from: kubectl-mesh\n      to: .\n    - from: LICENSE\n      to: .\n";

fn expected_bins(bins: &[&str]) -> Expected {
    Expected { version: "1.2.3".to_owned(), bins: bins.iter().map(|bin| (*bin).to_owned()).collect() }
}

/// `text` with `from` replaced by `to`, which must occur in it (so a mutation cannot miss).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the manifest");
    text.replacen(from, to, 1)
}

fn assert_problem(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|problem| problem.contains(needle)),
        "no problem mentions {needle:?}; problems:\n- {}",
        problems.join("\n- ")
    );
}

#[test]
fn validator_accepts_the_baseline() {
    let problems = validate(&good_manifest(FILES), &expected_bins(&["kubectl-mesh"]));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn validator_names_each_broken_field() {
    let good = good_manifest(FILES);
    let expected = expected_bins(&["kubectl-mesh"]);
    let cases = [
        (replaced(&good, "kind: Plugin", "kind: Plugins"), "kind is \"Plugins\""),
        (replaced(&good, "v1alpha2", "v1alpha1"), "apiVersion is"),
        (replaced(&good, "name: mesh", "name: mash"), "metadata.name \"mash\" means binary \"kubectl-mash\""),
        (replaced(&good, "version: v1.2.3", "version: 1.2.3"), "spec.version is \"1.2.3\""),
        (replaced(&good, "homepage: https://", "homepage: http://"), "spec.homepage"),
        (
            replaced(&good, "shortDescription: Short", &format!("shortDescription: {}", "x".repeat(51))),
            "shortDescription",
        ),
        (replaced(&good, "    Long.\n", &format!("    {}\n", "y".repeat(81))), "spec.description has a line over 80"),
        (replaced(&good, "os: darwin\n        arch: arm64", "os: windows\n        arch: arm64"), "os=\"windows\""),
        (replaced(&good, "os: darwin\n        arch: arm64", "os: linux\n        arch: amd64"), "repeats os=\"linux\""),
        (
            replaced(&good, "os: darwin\n        arch: arm64", "os: linux\n        arch: amd64"),
            "no platform for darwin/arm64",
        ),
        (
            replaced(&good, "        arch: amd64\n", "        arch: amd64\n        libc: gnu\n"),
            "has keys [\"arch\", \"libc\", \"os\"]",
        ),
        (replaced(&good, "uri: https://", "uri: http://"), "is not an https URL"),
        (replaced(&good, "v1.2.3_darwin_amd64.tar.gz", "v1.2.3_darwin.tar.gz"), "does not contain \"amd64\""),
        (replaced(&good, "v1.2.3_darwin_amd64.tar.gz", "v1.2.3_darwin_amd64.zip"), "documented release layout"),
        (replaced(&good, &"ab".repeat(32), "abc"), ".sha256 \"abc\" is not 64 lowercase hex"),
        (replaced(&good, &"ab".repeat(32), &"AB".repeat(32)), "is not 64 lowercase hex"),
        (replaced(&good, "bin: kubectl-mesh", "bin: kubectl-msh"), ".bin is \"kubectl-msh\""),
        (
            replaced(&good, "- from: kubectl-mesh\n      to: .", "- from: kubectl-mesh\n      to: bin/"),
            "is not among the installed files",
        ),
        (
            replaced(&good, "- from: LICENSE\n      to: .", "- from: LICENSE\n      to: ../LICENSE"),
            "files[1].to \"../LICENSE\"",
        ),
        (replaced(&good, "- from: LICENSE\n      to: .", "- from: README.md\n      to: ."), "do not install LICENSE"),
    ];
    for (text, needle) in &cases {
        assert_problem(&validate(text, &expected), needle);
    }
}

#[test]
fn validator_rejects_unknown_and_missing_keys() {
    let good = good_manifest(FILES);
    let expected = expected_bins(&["kubectl-mesh"]);
    let cases = [
        (format!("{good}status: {{}}\n"), "status"),
        (replaced(&good, "  version: v1.2.3\n", "  version: v1.2.3\n  license: Apache-2.0\n"), "license"),
        (replaced(&good, "    bin: kubectl-mesh\n", "    bin: kubectl-mesh\n    arch: amd64\n"), "arch"),
        (replaced(&good, "  shortDescription: Short\n", ""), "shortDescription"),
        (replaced(&good, "    bin: kubectl-mesh\n", "\n"), "bin"),
    ];
    for (text, needle) in &cases {
        let problems = validate(text, &expected);
        assert_problem(&problems, "not a krew Plugin manifest");
        assert_problem(&problems, needle);
    }
}

#[test]
fn validator_requires_the_installed_executables_to_be_the_crates_bins() {
    // A completion helper the crate builds but the manifest does not install.
    let with_helper = expected_bins(&["kubectl-mesh", "kubectl_complete-mesh"]);
    assert_problem(&validate(&good_manifest(FILES), &with_helper), "the plugin crate builds");
    let files = format!("{FILES}    - from: kubectl_complete-mesh\n      to: .\n");
    let problems = validate(&good_manifest(&files), &with_helper);
    assert!(problems.is_empty(), "{problems:#?}");
    // ...and one the manifest installs but the crate does not build.
    assert_problem(&validate(&good_manifest(&files), &expected_bins(&["kubectl-mesh"])), "the plugin crate builds");
}

#[test]
fn the_license_the_archives_ship_is_the_workspace_license() {
    let root = mesh_test_data::repo_root();
    let license = std::fs::read_to_string(root.join("LICENSE")).expect("LICENSE at the repository root");
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    assert!(cargo.contains("license = \"Apache-2.0\""), "the workspace's license field changed: update LICENSE too");
    assert!(
        license.contains("Apache License") && license.contains("Version 2.0, January 2004"),
        "LICENSE is not the Apache License 2.0 that Cargo.toml names"
    );
}
