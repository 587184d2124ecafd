//! The text rendering: cargo/ruff-like issues, then a summary.

mod common;

use common::*;

#[test]
fn text_report_layout() {
    let r = validate(&with(
        "config.yaml",
        "dataset:\n  image_width: 640\n  image_height: 224\n",
    ));
    let text = r.to_text(false);
    assert!(
        text.contains("error[BYOM501]: Dimension mismatch: config.yaml has 640x224"),
        "{text}"
    );
    assert!(
        text.contains("\n  --> config.yaml\n  = hint: Make image_width equal input_shape[3]"),
        "{text}"
    );
    assert!(text.contains("input shape:   [1, 3, 224, 224]"), "{text}");
    assert!(text.contains("result:        invalid ("), "{text}");
    assert!(!text.contains('\x1b'));
    assert!(r.to_text(true).contains("\x1b[1;31merror[BYOM501]"));
}

#[test]
fn multi_line_messages_are_indented() {
    let members: Vec<Member> = good_members()
        .into_iter()
        .filter(|m| m.name != b"mochi.json")
        .collect();
    let text = validate(&targz(&members)).to_text(false);
    assert!(
        text.contains(
            "error[BYOM101]: Missing required files in model artifact:\n    mochi.json\n"
        ),
        "{text}"
    );
}
