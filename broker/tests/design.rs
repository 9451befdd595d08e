//! docs/design.md draws the crate map as a list of arrows, top layer first. This test holds it
//! to the code: each line's arrows are exactly the Fleetgate dependencies in that crate's
//! `Cargo.toml`, every crate of the workspace is drawn, and every arrow points down the list
//! (no crate depends on one drawn above it, so there is no cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// `fleetgate-x` for `x`, `fleetgate` for the binary.
fn crate_name(word: &str) -> String {
    let word = word.trim();
    if word.starts_with("fleetgate") {
        word.to_string()
    } else {
        format!("fleetgate-{word}")
    }
}

/// (crate, its drawn dependencies) in the order drawn.
fn drawn() -> Vec<(String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(root().join("docs/design.md")).unwrap();
    let start = doc
        .find("Layers, top to bottom")
        .expect("the crate map in docs/design.md");
    let block = doc[start..]
        .split("```")
        .nth(1)
        .expect("the map's code block");
    let mut out = Vec::new();
    for line in block.lines().filter(|l| l.contains("->")) {
        let (left, right) = line.split_once("->").unwrap();
        // "binary     fleetgate (broker/)" or "           fleetgate-acl, fleetgate-kura".
        let left = left.split('(').next().unwrap();
        let names: Vec<String> = left
            .split(',')
            .filter_map(|part| part.split_whitespace().last())
            .map(crate_name)
            .collect();
        let deps: BTreeSet<String> = if right.trim() == "nothing" {
            BTreeSet::new()
        } else {
            // Remove the parenthesised reasons, then split the names.
            let mut plain = String::new();
            let mut depth = 0;
            for c in right.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            plain.split(',').map(crate_name).collect()
        };
        for name in names {
            out.push((name, deps.clone()));
        }
    }
    out
}

/// Every workspace member's name and its normal Fleetgate dependencies.
fn actual() -> BTreeMap<String, BTreeSet<String>> {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let members = manifest["workspace"]["members"].as_array().unwrap();
    let mut out = BTreeMap::new();
    for member in members {
        let text =
            std::fs::read_to_string(root().join(member.as_str().unwrap()).join("Cargo.toml"))
                .unwrap();
        let krate: toml::Table = toml::from_str(&text).unwrap();
        let name = krate["package"]["name"].as_str().unwrap().to_string();
        if name == "fleetgate-benches" {
            continue; // criterion benches: dev-dependencies only, drawn nowhere on purpose
        }
        let deps = krate
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("fleetgate"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

#[test]
fn the_crate_map_in_docs_matches_the_manifests() {
    let drawn = drawn();
    let actual = actual();
    let drawn_names: BTreeSet<&String> = drawn.iter().map(|(n, _)| n).collect();
    let actual_names: BTreeSet<&String> = actual.keys().collect();
    assert_eq!(
        drawn_names, actual_names,
        "every crate drawn once, no other"
    );
    for (position, (name, deps)) in drawn.iter().enumerate() {
        assert_eq!(
            deps, &actual[name],
            "{name}: the arrows drawn vs its Cargo.toml"
        );
        for dep in deps {
            let below = drawn[position + 1..].iter().any(|(n, _)| n == dep);
            assert!(
                below,
                "{name} -> {dep}, but {dep} is not drawn below {name}"
            );
        }
    }
}
