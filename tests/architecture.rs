//! The layering ARCHITECTURE.md describes, checked: every top-level module of `src/` imports only
//! modules of lower layers, so there is no import circle and the decision never reaches up into
//! the server, the watchers or the metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may import modules of any lower layer, none of its own or higher.
/// Keep in step with ARCHITECTURE.md ("Which way imports go").
const LAYERS: &[&[&str]] = &[
    &[
        "vocabulary",
        "json",
        "units",
        "sync",
        "fingerprint",
        "cluster",
    ],
    &["admission", "config", "argocd"],
    &["recognize", "policy"],
    &["identity"],
    &["entities"],
    &["decide"],
    &["respond", "mutate"],
    &["audit"],
    &["authoring", "metrics"],
    &["reload", "namespace_watch", "policy_reports"],
    &["server"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The crate-level modules `text` names: `crate::x…` paths and `use crate::{x, y::…}` groups.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    found.insert(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "unit_tests") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module -> the other top-level modules it imports.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let named = named_modules(&text);
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(named.into_iter().filter(|name| *name != top));
    }
    graph
}

#[test]
fn every_module_has_a_layer_and_imports_only_lower_layers() {
    let graph = imports();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    let mut problems = Vec::new();
    for (module, named) in &graph {
        let Some(layer) = layer_of(module) else {
            problems.push(format!(
                "{module} has no layer in LAYERS (tests/architecture.rs)"
            ));
            continue;
        };
        for other in named {
            match layer_of(other) {
                Some(other_layer) if other_layer < layer => {}
                Some(_) => problems.push(format!(
                    "{module} (layer {layer}) imports {other}, which is not below it"
                )),
                None if graph.contains_key(other) => {}
                // Not a module (a macro or an item re-exported at the crate root).
                None => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_reads_paths_and_groups() {
    let named = named_modules(
        "use crate::decide::{Engine, Outcome};\nuse crate::{audit, server::tls};\nlet x = crate::json::get(v);",
    );
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["audit", "decide", "json", "server"]
    );
}
