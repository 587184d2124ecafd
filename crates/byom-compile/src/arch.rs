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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
    fn the_core_recognises_every_buildable_architecture_from_its_own_keys() {
        // The compile server builds what the validator's recognition (in the report) names:
        // build every architecture once, the large ones too (VGG: ~130M parameters), one at a
        // time, and the core must name it, with its class count, from its parameters alone;
        // and the exact confirmation must accept it.
        for &name in BUILDABLE {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            build(name, &vs.root(), 3).expect(name);
            let vars = vs.variables();
            let tensors: Vec<byom_core::torch::TensorInfo> = vars
                .iter()
                .map(|(k, v)| byom_core::torch::TensorInfo {
                    name: k.clone(),
                    shape: v.size().iter().map(|&d| d as u64).collect(),
                    ..Default::default()
                })
                .collect();
            let m = byom_core::torch::arch::recognise(&tensors)
                .arch
                .expect(name);
            assert_eq!((m.name.as_str(), m.num_classes), (name, 3));
            let shapes: BTreeMap<String, Vec<i64>> =
                vars.iter().map(|(k, v)| (k.clone(), v.size())).collect();
            assert_eq!(crate::state_dict::confirm(name, 3, &shapes), Ok(name));
        }
    }

    #[test]
    fn confirm_refuses_a_near_miss() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        build("resnet18", &vs.root(), 4).unwrap();
        let mut shapes: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .iter()
            .map(|(k, v)| (k.clone(), v.size()))
            .collect();
        assert!(crate::state_dict::confirm("resnet34", 4, &shapes).is_err());
        assert!(crate::state_dict::confirm("resnet18", 5, &shapes).is_err());
        assert!(crate::state_dict::confirm("yolov8n", 4, &shapes).is_err());
        shapes.insert("extra.weight".into(), vec![1]);
        let e = crate::state_dict::confirm("resnet18", 4, &shapes).unwrap_err();
        assert!(e.contains("extra.weight"), "{e}");
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
