//! Every layout, metadata and cross-file rule, on real packages built in memory.

mod common;

use common::*;

fn with_config(c: &str) -> byom_core::Report {
    validate(&with("config.yaml", c))
}
fn with_mochi(c: &str) -> byom_core::Report {
    validate(&with("mochi.json", c))
}
fn with_manifest(c: &str) -> byom_core::Report {
    validate(&with("export_artifacts/manifest.json", c))
}

/// The good manifest with one substring replaced.
fn manifest_replacing(from: &str, to: &str) -> byom_core::Report {
    assert!(MANIFEST.contains(from), "{from}");
    with_manifest(&MANIFEST.replacen(from, to, 1))
}
fn mochi_replacing(from: &str, to: &str) -> byom_core::Report {
    assert!(MOCHI.contains(from), "{from}");
    with_mochi(&MOCHI.replacen(from, to, 1))
}

fn only(r: &byom_core::Report, code: &str) -> String {
    assert_eq!(own_codes(r), [code], "{r:#?}");
    issue(r, code).message.clone()
}

#[test]
fn missing_required_files_listed_one_per_line() {
    let members: Vec<Member> = good_members()
        .into_iter()
        .filter(|m| m.name != b"mochi.json" && m.name != b"config.yaml")
        .collect();
    let r = validate(&targz(&members));
    let i = issue(&r, "BYOM101");
    assert_eq!(
        i.message,
        "Missing required files in model artifact:\n  config.yaml\n  mochi.json"
    );
}

#[test]
fn no_pt_names_one_found_elsewhere() {
    let mut m: Vec<Member> = good_members()
        .into_iter()
        .filter(|m| !m.name.ends_with(b".pt"))
        .collect();
    m.push(file("model.pt", TINY_PT));
    let r = validate(&targz(&m));
    let i = issue(&r, "BYOM102");
    assert!(i
        .message
        .starts_with("No .pt model file found in export_artifacts/."));
    assert!(i.hint.contains("'model.pt'"), "{}", i.hint);
    // A .pt in a sub-folder of export_artifacts does not count either.
    let mut m: Vec<Member> = good_members()
        .into_iter()
        .filter(|m| !m.name.ends_with(b".pt"))
        .collect();
    m.push(file("export_artifacts/sub/model.pt", TINY_PT));
    assert!(has(&validate(&targz(&m)), "BYOM102"));
}

#[test]
fn two_pt_files() {
    let mut m = good_members();
    m.push(file("export_artifacts/other.pt", TINY_PT));
    let r = validate(&targz(&m));
    assert!(issue(&r, "BYOM103")
        .message
        .contains("export_artifacts/model.pt, export_artifacts/other.pt"));
    assert_eq!(
        r.summary.model_file.as_deref(),
        Some("export_artifacts/model.pt")
    );
}

#[test]
fn wrong_model_formats_get_specific_hints() {
    for (name, hint_part) in [
        ("model.pth", "rename it to model.pt"),
        ("model.onnx", "ONNX"),
        ("model.safetensors", "safetensors"),
        ("best.torchscript", "rename it to export_artifacts/best.pt"),
    ] {
        let mut m: Vec<Member> = good_members()
            .into_iter()
            .filter(|m| !m.name.ends_with(b".pt"))
            .collect();
        m.push(file(&format!("export_artifacts/{name}"), TINY_PT));
        let r = validate(&targz(&m));
        let i = issue(&r, "BYOM104");
        assert!(i.hint.contains(hint_part), "{name}: {}", i.hint);
        assert!(!has(&r, "BYOM102"), "{r:#?}");
        assert!(!has(&r, "BYOM106"), "{r:#?}");
    }
}

#[test]
fn extra_files_warn() {
    let mut m = good_members();
    m.push(file("README.md", "hi"));
    let r = validate(&targz(&m));
    assert_eq!(issue(&r, "BYOM106").file.as_deref(), Some("README.md"));
    assert!(r.errors.iter().all(|e| e.code.as_str() >= "BYOM600"));
}

#[test]
fn metadata_encoding_and_structure() {
    let r = validate(&targz(&[
        file("config.yaml", b"dataset:\n  image_width: \xff\n".as_slice()),
        file("mochi.json", MOCHI),
        file("export_artifacts/manifest.json", MANIFEST),
        file("export_artifacts/model.pt", TINY_PT),
    ]));
    assert_eq!(issue(&r, "BYOM107").file.as_deref(), Some("config.yaml"));
    let r = with_config("dataset:\n  image_width: 224\n  image_width: 224\n  image_height: 224\n");
    assert!(issue(&r, "BYOM108").message.contains("dataset.image_width"));
    let r = with_mochi(r#"{"stages": [], "stages": []}"#);
    assert_eq!(issue(&r, "BYOM108").file.as_deref(), Some("mochi.json"));
    let r = with_manifest(&format!("{}1{}", "[".repeat(100), "]".repeat(100)));
    assert!(has(&r, "BYOM109"));
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    assert!(issue(&with_config(&bomb), "BYOM109")
        .message
        .contains("alias"));
}

#[test]
fn config_rules() {
    assert_eq!(only(&with_config(""), "BYOM201"), "config.yaml is empty");
    assert!(only(&with_config("dataset: [unclosed\n"), "BYOM202")
        .starts_with("Invalid YAML in config.yaml: "));
    assert_eq!(
        only(&with_config("other: 1\n"), "BYOM203"),
        "config.yaml missing 'dataset' section"
    );
    assert_eq!(
        only(&with_config("dataset: 5\n"), "BYOM203"),
        "config.yaml missing 'dataset' section"
    );
    let r = with_config("dataset:\n  image_height: 224\n");
    assert_eq!(
        issue(&r, "BYOM204").message,
        "config.yaml missing 'dataset.image_width'"
    );
    for (v, shown) in [
        ("\"224\"", "\"224\""),
        ("224.0", "224.0"),
        ("true", "true"),
        ("0", "0"),
        ("-3", "-3"),
    ] {
        let r = with_config(&format!(
            "dataset:\n  image_width: {v}\n  image_height: 224\n"
        ));
        let msg = only(&r, "BYOM205");
        assert!(
            msg.starts_with(&format!(
                "Invalid image_width: {shown}. Must be positive integer."
            )),
            "{msg}"
        );
    }
    let r = with_config("dataset:\n  image_width: 224\n  image_height: 224\n  num_classes: two\n");
    assert!(has(&r, "BYOM206"));
    let r = with_config("dataset:\n  image_width: 224\n  image_height: 224\n  class_names: good\n");
    assert!(has(&r, "BYOM206"));
}

#[test]
fn mochi_rules() {
    assert_eq!(only(&with_mochi("  "), "BYOM301"), "mochi.json is empty");
    assert!(
        only(&with_mochi("{\"stages\": [}"), "BYOM302").starts_with("Invalid JSON in mochi.json: ")
    );
    assert_eq!(
        issue(&with_mochi("{}"), "BYOM303").message,
        "mochi.json missing 'stages' array"
    );
    assert_eq!(
        issue(&with_mochi("{\"stages\": []}"), "BYOM304").message,
        "mochi.json 'stages' must be a non-empty array"
    );
    let r = mochi_replacing("\"type\": \"classification\", ", "");
    assert_eq!(
        issue(&r, "BYOM305").message,
        "mochi.json missing 'stages[0].type'"
    );
    let r = mochi_replacing("\"input_shape\": [1, 3, 224, 224], ", "");
    assert_eq!(
        issue(&r, "BYOM306").message,
        "mochi.json missing 'stages[0].input_shape'"
    );
    let r = mochi_replacing("[1, 3, 224, 224]", "[3, 224, 224]");
    assert_eq!(
        issue(&r, "BYOM307").message,
        "Invalid input_shape: [3, 224, 224]. Must be [batch, channels, height, width]"
    );
    let r = mochi_replacing("[1, 3, 224, 224]", "[1, 3, \"224\", 224.0]");
    let dims: Vec<_> = r
        .errors
        .iter()
        .filter(|i| i.code == "BYOM308")
        .map(|i| i.message.as_str())
        .collect();
    assert_eq!(dims.len(), 2, "{r:#?}");
    assert!(dims[0].starts_with(
        "Invalid input_shape dimension at index 2: \"224\". Must be positive integer."
    ));
    let r = mochi_replacing("\"output_shape\": [1, 2]", "\"output_shape\": [1, -2]");
    assert!(has(&r, "BYOM309"));
    let r = mochi_replacing(
        "\"framework\": \"pytorch\"",
        "\"framework\": \"tensorflow\"",
    );
    assert_eq!(
        only(&r, "BYOM310"),
        "mochi.json model_info.framework is \"tensorflow\"; only pytorch models are supported."
    );
    assert!(own_codes(&mochi_replacing(
        "\"framework\": \"pytorch\"",
        "\"framework\": \"PyTorch\""
    ))
    .is_empty());
}

#[test]
fn manifest_rules() {
    assert_eq!(
        only(&with_manifest(""), "BYOM401"),
        "manifest.json is empty"
    );
    assert!(only(&with_manifest("{,}"), "BYOM402").starts_with("Invalid JSON in manifest.json: "));
    let no_graph = r#"{"input_shape": [1, 3, 224, 224], "compilable_models": [{"filename": "model.pt", "framework": "PYTORCH"}]}"#;
    assert_eq!(
        only(&with_manifest(no_graph), "BYOM403"),
        "manifest.json missing 'model_graph'"
    );
    let r = manifest_replacing("\"model_graph\": {\"stages\": [{\"type\": \"classification\", \"input_shape\": [1, 3, 224, 224], \"output_shape\": [1, 2]}]}", "\"model_graph\": {\"stages\": []}");
    assert!(has(&r, "BYOM403"));
    let r = manifest_replacing("\"input_shape\": [1, 3, 224, 224],\n", "");
    assert_eq!(only(&r, "BYOM404"), "manifest.json missing 'input_shape'");
    let r = with_manifest(&MANIFEST.replace(r#"[{"filename": "model.pt", "data_input_config": {"input": [1, 3, 224, 224]}, "framework": "PYTORCH"}]"#, "[]"));
    assert!(has(&r, "BYOM405"));
    let r = manifest_replacing("\"filename\": \"model.pt\", ", "");
    assert!(has(&r, "BYOM406"));
    let r = manifest_replacing("\"model.pt\"", "\"resnet.pt\"");
    assert!(only(&r, "BYOM407").contains("The .pt in the package is 'model.pt'"));
    assert!(own_codes(&manifest_replacing(
        "\"model.pt\"",
        "\"export_artifacts/model.pt\""
    ))
    .is_empty());
    let r = manifest_replacing("\"PYTORCH\"", "\"ONNX\"");
    assert!(has(&r, "BYOM408"));
}

#[test]
fn dimension_mismatch_uses_portal_wording() {
    let r = with_config("dataset:\n  image_width: 640\n  image_height: 480\n  num_classes: 2\n  class_names: [good, defect]\n");
    assert_eq!(
        issue(&r, "BYOM501").message,
        "Dimension mismatch: config.yaml has 640x480, but input_shape is [_, _, 224, 224]. Image dimensions must match."
    );
}

#[test]
fn input_shapes_must_agree_everywhere() {
    let r = manifest_replacing("\"input\": [1, 3, 224, 224]", "\"input\": [1, 3, 256, 256]");
    let i = issue(&r, "BYOM502");
    assert!(
        i.message
            .contains("compilable_models[0].data_input_config.input is [1, 3, 256, 256]"),
        "{}",
        i.message
    );
    assert!(!has(&r, "BYOM509"));
}

#[test]
fn stage_type_output_and_classes_agree() {
    let r = manifest_replacing(
        "\"type\": \"classification\"",
        "\"type\": \"object_detection\"",
    );
    assert!(has(&r, "BYOM503"));
    let r = manifest_replacing("\"output_shape\": [1, 2]", "\"output_shape\": [1, 3]");
    assert!(has(&r, "BYOM504"));
    let r = mochi_replacing("\"num_classes\": 2", "\"num_classes\": 3");
    assert!(has(&r, "BYOM505"));
    let r = with_config("dataset:\n  image_width: 224\n  image_height: 224\n  num_classes: 2\n  class_names: [a, b, c]\n");
    assert_eq!(
        issue(&r, "BYOM506").message,
        "class_names has 3 entries but num_classes is 2."
    );
}

#[test]
fn plausibility_warnings() {
    let r = validate(&targz(&[
        file("config.yaml", CONFIG),
        file(
            "mochi.json",
            MOCHI.replace("[1, 3, 224, 224]", "[1, 224, 224, 3]"),
        ),
        file(
            "export_artifacts/manifest.json",
            MANIFEST.replace("[1, 3, 224, 224]", "[1, 224, 224, 3]"),
        ),
        file("export_artifacts/model.pt", TINY_PT),
    ]));
    // The tiny model's first convolution proves 3 input channels, so channels last is the one
    // BYOM621 error, which replaces the BYOM507 guess about the same axis.
    assert!(has(&r, "BYOM621") && !has(&r, "BYOM507"), "{r:#?}");
    let r = mochi_replacing("\"output_shape\": [1, 2]", "\"output_shape\": [1, 5]");
    assert!(issue(&r, "BYOM508")
        .message
        .contains("5 scores but there are 2 classes"));
    let r = manifest_replacing("\"resize\": [224, 224]", "\"resize\": [256, 256]");
    assert_eq!(
        only(&r, "BYOM509"),
        "preprocessing.resize is [256, 256] but the input is 224x224 (height x width)."
    );
    let r = manifest_replacing("\"std\": [0.229, 0.224, 0.225]", "\"std\": [0.229, 0.0]");
    let n: Vec<_> = r.warnings.iter().filter(|i| i.code == "BYOM510").collect();
    assert_eq!(n.len(), 2, "{r:#?}");
    assert!(has(&manifest_replacing("\"RGB\"", "\"RGBA\""), "BYOM511"));
    // The known types are the core's one PostProcessing list, matched exactly (the runtime does).
    assert_eq!(
        only(
            &manifest_replacing("\"softmax\"", "\"Softmax\""),
            "BYOM512"
        ),
        "postprocessing.type \"Softmax\" is not one of softmax, argmax, yolo_nms, anomaly_score, argmax_per_pixel."
    );
    assert!(!has(
        &manifest_replacing("\"softmax\"", "\"argmax_per_pixel\""),
        "BYOM512"
    ));
    assert!(has(
        &manifest_replacing("\"threshold\": 0.5", "\"threshold\": 50"),
        "BYOM513"
    ));
    // Warnings alone keep a package valid (as far as these rules go).
    assert!(r.errors.iter().all(|e| e.code.as_str() >= "BYOM600"));
}

#[test]
fn yolo_84_channels_explained() {
    let config = "dataset:\n  image_width: 640\n  image_height: 640\n  num_classes: 5\n  class_names: [scratch, dent, crack, stain, good]\n";
    let mochi = r#"{"stages": [{"type": "yolov10_object_detection", "input_shape": [1, 3, 640, 640], "output_shape": [1, 84, 8400], "num_classes": 5, "confidence_threshold": 0.25, "nms_threshold": 0.45}], "model_info": {"framework": "pytorch"}}"#;
    let manifest = MANIFEST
        .replace("224, 224", "640, 640")
        .replace("\"classification\"", "\"yolov10_object_detection\"")
        .replace("[1, 2]", "[1, 84, 8400]")
        .replace(
            "\"softmax\", \"threshold\": 0.5",
            "\"yolo_nms\", \"confidence_threshold\": 0.25, \"nms_threshold\": 0.45",
        );
    let r = validate(&targz(&[
        file("config.yaml", config),
        file("mochi.json", mochi),
        file("export_artifacts/manifest.json", manifest),
        file("export_artifacts/model.pt", TINY_PT),
    ]));
    let msg = only(&r, "BYOM508");
    assert!(
        msg.contains("84 channels = 4 box coordinates + 80 classes"),
        "{msg}"
    );
    assert!(msg.contains("expected 9 = 4 + 5"), "{msg}");
    let fixed = validate(&targz(&[
        file("config.yaml", config),
        file("mochi.json", mochi.replace("84", "9")),
        file(
            "export_artifacts/manifest.json",
            MANIFEST
                .replace("224, 224", "640, 640")
                .replace("\"classification\"", "\"yolov10_object_detection\"")
                .replace("[1, 2]", "[1, 9, 8400]"),
        ),
        file("export_artifacts/model.pt", TINY_PT),
    ]));
    assert!(!has(&fixed, "BYOM508"), "{fixed:#?}");
}

#[test]
fn segmentation_output_checked_against_input() {
    let r = mochi_replacing(
        "\"type\": \"classification\"",
        "\"type\": \"semantic_segmentation\"",
    );
    // [1, 2] is not [B, N, H, W]; also the manifest type disagrees.
    assert!(has(&r, "BYOM508"));
    assert!(has(&r, "BYOM503"));
}

/// The good package with a non-square 256x320 (height x width) input declared everywhere and
/// `resize` as given.
fn non_square_with_resize(resize: &str) -> byom_core::Report {
    let shape = |s: &str| s.replace("[1, 3, 224, 224]", "[1, 3, 256, 320]");
    let manifest = shape(MANIFEST).replacen("\"resize\": [224, 224]", resize, 1);
    assert_ne!(manifest, shape(MANIFEST), "{resize}");
    validate(&targz(&[
        file(
            "config.yaml",
            CONFIG.replace(
                "image_width: 224\n  image_height: 224",
                "image_width: 320\n  image_height: 256",
            ),
        ),
        file("mochi.json", shape(MOCHI)),
        file("export_artifacts/manifest.json", manifest),
        file("export_artifacts/model.pt", TINY_PT),
    ]))
}

#[test]
fn transposed_resize_warns_that_the_order_is_height_width() {
    // [height, width], as byom pack and the page write it: nothing to say.
    assert!(own_codes(&non_square_with_resize("\"resize\": [256, 320]")).is_empty());
    // [width, height]: only likely wrong (the file cannot prove the order), so a warning that
    // says why and what to write.
    let r = non_square_with_resize("\"resize\": [320, 256]");
    assert!(r.valid, "{r:#?}");
    assert_eq!(
        only(&r, "BYOM509"),
        "preprocessing.resize is [320, 256], the input's width then height: the order is \
         [height, width], so it is most likely transposed (the input is 256x320, height x \
         width: write [256, 320])."
    );
    // Another size keeps the plain mismatch message.
    assert_eq!(
        only(&non_square_with_resize("\"resize\": [320, 320]"), "BYOM509"),
        "preprocessing.resize is [320, 320] but the input is 256x320 (height x width)."
    );
}
