//! Architectures a state dict can be compiled as: each is built in Rust with `tch::vision`, and
//! a state dict matches one only when every parameter name and shape agree exactly.
//!
//! EfficientNet, AlexNet and VGG are built by [`crate::efficientnet`] and [`crate::classic`]:
//! tch's own have torchvision's parameter names but not its graphs. DenseNet is not here:
//! `tch::vision::densenet` loads a torchvision state dict and then computes something else
//! (relative error ~3e3 at 224×224), so a DenseNet state dict is refused as not compilable.
//!
//! The names are those of `byom_core::torch::arch` (the table shared with the validator). An
//! architecture belongs there only when a test compiles a real torchvision instance of it; see
//! docs/targets.md for which `tch::vision` builders match torchvision's keys.

use std::collections::BTreeMap;

use tch::nn::{self, ModuleT};
use tch::vision;

/// Builds architecture `name` with `num_classes` outputs under `p`; `None` for an unknown name.
pub fn build(name: &str, p: &nn::Path, num_classes: i64) -> Option<Box<dyn ModuleT>> {
    use vision::{mobilenet, resnet, squeezenet};
    let m: Box<dyn ModuleT> = match name {
        "resnet18" => Box::new(resnet::resnet18(p, num_classes)),
        "resnet34" => Box::new(resnet::resnet34(p, num_classes)),
        "resnet50" => Box::new(resnet::resnet50(p, num_classes)),
        "resnet101" => Box::new(resnet::resnet101(p, num_classes)),
        "resnet152" => Box::new(resnet::resnet152(p, num_classes)),
        "mobilenet_v2" => Box::new(mobilenet::v2(p, num_classes)),
        "squeezenet1_0" => Box::new(squeezenet::v1_0(p, num_classes)),
        "squeezenet1_1" => Box::new(squeezenet::v1_1(p, num_classes)),
        "alexnet" => Box::new(crate::classic::alexnet(p, num_classes)),
        _ => {
            if let Some(v) = name.strip_prefix("efficientnet_b") {
                Box::new(crate::efficientnet::build(v.parse().ok()?, p, num_classes)?)
            } else {
                let v = name.strip_prefix("vgg")?;
                let (depth, bn) = v.strip_suffix("_bn").map_or((v, false), |d| (d, true));
                Box::new(crate::classic::vgg(
                    p,
                    depth.parse().ok()?,
                    bn,
                    num_classes,
                )?)
            }
        }
    };
    Some(m)
}

/// Every name [`build`] knows, smallest first within a family.
pub const BUILDABLE: &[&str] = &[
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "mobilenet_v2",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "squeezenet1_0",
    "squeezenet1_1",
    "alexnet",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
];

/// torchvision keys that tch has no variable for and whose value does not affect inference
/// (batch-norm step counters).
pub fn ignorable_key(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}

/// Candidate architectures for a state dict, from its key names (cheap; the exact match is
/// checked by building). The classifier's width gives the number of classes.
pub fn candidates(shapes: &BTreeMap<String, Vec<i64>>) -> Vec<(&'static str, i64)> {
    let has = |k: &str| shapes.contains_key(k);
    let out_of = |k: &str| shapes.get(k).and_then(|s| s.first().copied());
    let family: &[&str] = if has("fc.weight") && has("layer1.0.conv1.weight") {
        &["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    } else if has("features.1.0.block.0.0.weight") {
        &[
            "efficientnet_b0",
            "efficientnet_b1",
            "efficientnet_b2",
            "efficientnet_b3",
            "efficientnet_b4",
            "efficientnet_b5",
            "efficientnet_b6",
            "efficientnet_b7",
        ]
    } else if has("features.1.conv.0.0.weight") && has("classifier.1.weight") {
        &["mobilenet_v2"]
    } else if has("features.3.squeeze.weight") || has("features.4.squeeze.weight") {
        &["squeezenet1_0", "squeezenet1_1"]
    } else if has("classifier.6.weight") && has("features.10.weight") && !has("features.12.weight")
    {
        &["alexnet"]
    } else if has("classifier.6.weight") {
        &[
            "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
        ]
    } else {
        &[]
    };
    let classes = out_of("fc.weight")
        .or_else(|| out_of("classifier.weight"))
        .or_else(|| out_of("classifier.6.weight"))
        .or_else(|| out_of("classifier.1.weight"))
        .or_else(|| out_of("classifier.1.bias"));
    match classes {
        Some(n) if n > 0 => family.iter().map(|&f| (f, n)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_buildable_name_builds() {
        // Building the large ones allocates hundreds of MB; the small ones prove the table.
        for name in [
            "resnet18",
            "mobilenet_v2",
            "squeezenet1_1",
            "efficientnet_b0",
        ] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            assert!(build(name, &vs.root(), 7).is_some(), "{name}");
        }
        let vs = nn::VarStore::new(tch::Device::Cpu);
        assert!(build("yolov8n", &vs.root(), 7).is_none());
        for name in BUILDABLE {
            assert!(!name.is_empty());
        }
    }

    #[test]
    fn resnet_keys_give_family_and_classes() {
        let mut shapes = BTreeMap::new();
        shapes.insert("fc.weight".to_string(), vec![5, 512]);
        shapes.insert("layer1.0.conv1.weight".to_string(), vec![64, 64, 3, 3]);
        let c = candidates(&shapes);
        assert_eq!(c.first(), Some(&("resnet18", 5)));
        assert_eq!(c.len(), 5);
        assert!(candidates(&BTreeMap::new()).is_empty());
    }
}
