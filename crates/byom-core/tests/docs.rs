//! The rule table is well-formed and `docs/rules.md` is what `byom rules --markdown` prints.

use byom_core::rules;

#[test]
fn codes_are_unique_sorted_and_well_formed() {
    let all = rules::all();
    let codes: Vec<&str> = all.iter().map(|r| r.code).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(codes, sorted, "duplicate or unsorted codes");
    for r in &all {
        assert!(
            r.code.len() == 7 && r.code.starts_with("BYOM"),
            "{}",
            r.code
        );
        assert!(
            !r.hint.is_empty() && !r.summary.is_empty() && !r.doc.is_empty(),
            "{}",
            r.code
        );
        assert!(
            r.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
            "{}",
            r.name
        );
    }
    for code in [
        "BYOM001", "BYOM014", "BYOM101", "BYOM109", "BYOM206", "BYOM310", "BYOM408", "BYOM513",
    ] {
        assert!(rules::by_code(code).is_some(), "{code} missing");
    }
}

#[test]
fn docs_rules_md_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rules.md");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == rules::markdown(),
        "docs/rules.md is stale: run `cargo run -p byom-cli -- rules --markdown > docs/rules.md`"
    );
}
