//! Every key of the schema is documented: in the config reference (docs/config.md) and in the shipped
//! example. The key list comes from the code, not from a hand-kept list: the schema denies
//! unknown keys, and its error names the keys a table takes.

use std::path::Path;

use nixos_lift::config::Config;

/// The keys a table at `prefix` takes, or `None` when `prefix` is not a table of the schema.
fn table_keys(prefix: &[String]) -> Option<Vec<String>> {
    let mut doc = String::new();
    for (depth, key) in prefix.iter().enumerate() {
        doc.push_str(&format!("{}{key}:\n", "  ".repeat(depth)));
    }
    doc.push_str(&format!("{}zz_probe: 1\n", "  ".repeat(prefix.len())));
    let err = match Config::parse(Path::new("probe.yaml"), doc) {
        Err(nixos_lift::Error::ConfigFile(err)) => err,
        other => panic!("probe of {prefix:?} gave {other:?}"),
    };
    let expected = err.message.strip_prefix("unknown key, expected ")?;
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    Some(
        expected
            .split(", ")
            .flat_map(|part| part.split(" or "))
            .map(str::to_string)
            .collect(),
    )
}

/// Every dotted key path of the schema, tables and leaves.
fn schema_keys() -> Vec<String> {
    let mut out = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    while let Some(prefix) = queue.pop() {
        for key in table_keys(&prefix).unwrap_or_default() {
            let mut path = prefix.clone();
            path.push(key);
            out.push(path.join("."));
            queue.push(path);
        }
    }
    out.sort();
    out
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn the_schema_is_discovered_from_the_code() {
    let keys = schema_keys();
    for key in [
        "version",
        "flake",
        "installer.sha256",
        "nix.access_tokens",
        "report.webhook_token",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    assert!(keys.len() >= 20, "{keys:?}");
}

#[test]
fn every_key_is_in_the_config_reference() {
    let section = read("docs/config.md");
    assert!(
        section.starts_with("# Config reference\n"),
        "docs/config.md is not the config reference"
    );
    let missing: Vec<String> = schema_keys()
        .into_iter()
        .filter(|key| !section.contains(&format!("`{key}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md (Config reference) lacks: {missing:?}"
    );
}

#[test]
fn every_key_is_in_the_shipped_example() {
    let example = read("cloud-init/nixos-lift.example.yaml");
    let written: Vec<String> = example
        .lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start();
            let (key, _) = line.split_once(':')?;
            let simple = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            simple.then(|| key.to_string())
        })
        .collect();
    let missing: Vec<String> = schema_keys()
        .into_iter()
        .filter(|key| {
            let last = key.rsplit('.').next().unwrap_or(key);
            !written.iter().any(|w| w == last)
        })
        .collect();
    assert!(missing.is_empty(), "the example lacks: {missing:?}");
}
