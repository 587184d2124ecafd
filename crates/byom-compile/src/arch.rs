//! Architectures a state dict can be compiled as: each is built in Rust with tch, and a state
//! dict matches one only when every parameter name and shape agree exactly.
//!
//! EfficientNet, DenseNet, AlexNet and VGG are built by [`crate::efficientnet`],
//! [`crate::densenet`] and [`crate::classic`]: tch's own have torchvision's parameter names but
//! not its graphs (tests/test_compile_e2e.py compares each with a real torchvision instance).
//!
//! ResNet, MobileNet V2 and SqueezeNet are `tch::vision`'s own builders.
//!
//! The names are those of `byom_core::torch::arch` (the table shared with the validator). An
//! architecture belongs there only when a test compiles a real torchvision instance of it
//! (tests/test_compile_e2e.py: one per family).

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
            } else if let Some(v) = name.strip_prefix("densenet") {
                Box::new(crate::densenet::build(v.parse().ok()?, p, num_classes)?)
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
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
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
    } else if has("features.denseblock1.denselayer1.conv1.weight") {
        &["densenet121", "densenet161", "densenet169", "densenet201"]
    } else if has("features.1.conv.0.0.weight") && has("classifier.1.weight") {
        &["mobilenet_v2"]
    } else if has("features.3.squeeze.weight") || has("features.4.squeeze.weight") {
        &["squeezenet1_0", "squeezenet1_1"]
    } else if has("classifier.1.weight") && has("classifier.6.weight") {
        // AlexNet's linear layers are classifier.{1,4,6}, VGG's classifier.{0,3,6}. (Telling
        // them apart by `features.*` indices mistook vgg13_bn/16_bn/19_bn for AlexNet.)
        &["alexnet"]
    } else if has("classifier.0.weight") && has("classifier.6.weight") {
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
            "densenet121",
        ] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            assert!(build(name, &vs.root(), 7).is_some(), "{name}");
        }
        let vs = nn::VarStore::new(tch::Device::Cpu);
        assert!(build("yolov8n", &vs.root(), 7).is_none());
        assert!(build("densenet122", &vs.root(), 7).is_none());
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

    #[test]
    fn every_buildable_architecture_is_a_candidate_for_its_own_keys() {
        // Builds every architecture once, the large ones too (VGG: ~130M parameters), one at a
        // time: the candidates must offer each for the keys of its own state dict.
        for &name in BUILDABLE {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            build(name, &vs.root(), 3).expect(name);
            let shapes = vs
                .variables()
                .into_iter()
                .map(|(k, v)| (k, v.size()))
                .collect();
            assert!(
                candidates(&shapes).contains(&(name, 3)),
                "{name}: {:?}",
                candidates(&shapes)
            );
        }
    }

    #[test]
    fn the_core_table_says_compilable_exactly_for_what_is_built_here() {
        for a in byom_core::torch::arch::ARCHITECTURES {
            assert_eq!(
                a.server_compilable,
                BUILDABLE.contains(&a.name),
                "{}",
                a.name
            );
        }
        for name in BUILDABLE {
            assert!(byom_core::torch::arch::spec_of(name).is_some(), "{name}");
        }
    }

    #[test]
    fn densenet_keys_give_family_and_classes() {
        let mut shapes = BTreeMap::new();
        shapes.insert("classifier.weight".to_string(), vec![3, 1024]);
        shapes.insert(
            "features.denseblock1.denselayer1.conv1.weight".to_string(),
            vec![128, 64, 1, 1],
        );
        let c = candidates(&shapes);
        assert_eq!(c.first(), Some(&("densenet121", 3)));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn densenet121_has_torchvision_parameter_names_and_shapes() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        build("densenet121", &vs.root(), 3).expect("densenet121");
        let vars = vs.variables();
        // torchvision's state dict: 727 tensors, less 121 `num_batches_tracked` counters.
        assert_eq!(vars.len(), 606);
        let size = |k: &str| vars.get(k).map(|t| t.size());
        assert_eq!(size("features.conv0.weight"), Some(vec![64, 3, 7, 7]));
        assert_eq!(
            size("features.denseblock4.denselayer16.conv2.weight"),
            Some(vec![32, 128, 3, 3])
        );
        assert_eq!(
            size("features.transition3.conv.weight"),
            Some(vec![512, 1024, 1, 1])
        );
        assert_eq!(size("features.norm5.running_var"), Some(vec![1024]));
        assert_eq!(size("classifier.weight"), Some(vec![3, 1024]));
    }
}
