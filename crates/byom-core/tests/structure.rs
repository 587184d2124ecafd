//! The crate's shape: typed rule codes with the category their number says, and no cycle
//! between top-level modules (so `diagnostics` stays a leaf and the data flow stays one way).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use byom_core::{rules, Category, Code};

#[test]
fn every_rule_code_is_typed_and_its_category_matches_its_hundred() {
    for r in rules::all() {
        let code = Code::parse(r.code).unwrap_or_else(|| panic!("{} is malformed", r.code));
        assert_eq!(r.code(), code);
        assert_eq!(code.as_str(), r.code);
        let expected = match code.number() / 100 {
            0 => Category::Archive,
            1 => Category::Layout,
            2 => Category::Config,
            3 => Category::Mochi,
            4 => Category::Manifest,
            5 => Category::Agreement,
            6 if byom_core::diagnostics::SAFETY_CODES.contains(&code.number()) => Category::Safety,
            6 => Category::Model,
            7 => Category::Compatibility,
            n => panic!("{}: no category for the {n}00s", r.code),
        };
        assert_eq!(r.category(), expected, "{}", r.code);
        let issue = r.issue(None, "m");
        assert_eq!(issue.code, r.code);
        assert_eq!(issue.category(), expected);
        let json = serde_json::to_value(&issue).unwrap();
        assert_eq!(json["code"], r.code);
        assert_eq!(json["category"], expected.as_str());
    }
    // Every safety code is a real rule, so the list cannot silently rot.
    for n in byom_core::diagnostics::SAFETY_CODES {
        let text = format!("BYOM{n:03}");
        assert!(
            rules::by_code(&text).is_some(),
            "{text} in SAFETY_CODES is no rule"
        );
    }
}

/// Top-level modules a source text names through `crate::…` (including `crate::{a, b}` and
/// names the crate root re-exports, e.g. `crate::Settings` is `settings`).
fn referenced(
    text: &str,
    modules: &BTreeSet<String>,
    root: &BTreeMap<String, String>,
) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let resolve = |name: &str| -> Option<String> {
        if modules.contains(name) {
            Some(name.to_string())
        } else {
            root.get(name).cloned()
        }
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                out.extend(resolve(&ident(part.trim())));
            }
        } else {
            out.extend(resolve(&ident(rest)));
        }
    }
    out
}

#[test]
fn no_module_cycle_inside_byom_core() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    // `pub use settings::Settings;` and `pub use report::{Event, Issue};` in lib.rs.
    let mut root = BTreeMap::new();
    for l in lib.lines() {
        if let Some(rest) = l.trim().strip_prefix("pub use ") {
            let (module, names) = rest.split_once("::").unwrap();
            for name in names
                .trim_end_matches(';')
                .trim_matches(['{', '}'])
                .split(',')
            {
                root.insert(name.trim().to_string(), module.to_string());
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &modules {
        let mut files = Vec::new();
        let file = src.join(format!("{m}.rs"));
        if file.exists() {
            files.push(file);
        }
        let mut dirs = vec![src.join(m)];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        assert!(!files.is_empty(), "module {m} has no source");
        let deps = edges.entry(m.clone()).or_default();
        for f in files {
            // Doc links (`[`crate::rules`]`) are not dependencies: skip comment lines.
            let text: String = std::fs::read_to_string(&f)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            deps.extend(
                referenced(&text, &modules, &root)
                    .into_iter()
                    .filter(|d| d != m),
            );
        }
    }
    assert!(
        edges["diagnostics"].is_empty(),
        "diagnostics must stay a leaf, it uses {:?}",
        edges["diagnostics"]
    );
    // Depth-first search; a back edge is a cycle, reported as its path.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("module cycle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_string());
        for d in &edges[m] {
            visit(d, edges, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
}
