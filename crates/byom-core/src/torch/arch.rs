//! The architecture table shared with the compile server.
//!
//! Why a table: a state dict is only weights; the server can compile it only when it can build
//! the graph itself (in Rust with tch, crates/byom-compile/src/arch.rs) and the key names match
//! torchvision's. This module recognises a torchvision state dict from its key names and shapes,
//! and says whether the server builds that architecture (`server_compilable`). An entry is
//! compilable only while the compile tests (tests/test_compile_e2e.py) compile a real
//! torchvision instance of its family and match torchvision's output; one that fails them is
//! turned off (`server_compilable: false`: recognised, BYOM609 "cannot compile").

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::TensorInfo;

/// One architecture the recogniser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArchSpec {
    /// torchvision / tch::vision name (`resnet50`).
    pub name: &'static str,
    /// Family, for display (`ResNet`).
    pub family: &'static str,
    /// The compile server can build this graph and load these weights into it.
    pub server_compilable: bool,
}

const fn spec(name: &'static str, family: &'static str) -> ArchSpec {
    ArchSpec {
        name,
        family,
        server_compilable: true,
    }
}

/// Every architecture recognised, in display order.
pub const ARCHITECTURES: &[ArchSpec] = &[
    spec("resnet18", "ResNet"),
    spec("resnet34", "ResNet"),
    spec("resnet50", "ResNet"),
    spec("resnet101", "ResNet"),
    spec("resnet152", "ResNet"),
    spec("efficientnet_b0", "EfficientNet"),
    spec("efficientnet_b1", "EfficientNet"),
    spec("efficientnet_b2", "EfficientNet"),
    spec("efficientnet_b3", "EfficientNet"),
    spec("efficientnet_b4", "EfficientNet"),
    spec("efficientnet_b5", "EfficientNet"),
    spec("efficientnet_b6", "EfficientNet"),
    spec("efficientnet_b7", "EfficientNet"),
    spec("mobilenet_v2", "MobileNet"),
    spec("densenet121", "DenseNet"),
    spec("densenet161", "DenseNet"),
    spec("densenet169", "DenseNet"),
    spec("densenet201", "DenseNet"),
    spec("vgg11", "VGG"),
    spec("vgg13", "VGG"),
    spec("vgg16", "VGG"),
    spec("vgg19", "VGG"),
    spec("vgg11_bn", "VGG"),
    spec("vgg13_bn", "VGG"),
    spec("vgg16_bn", "VGG"),
    spec("vgg19_bn", "VGG"),
    spec("squeezenet1_0", "SqueezeNet"),
    spec("squeezenet1_1", "SqueezeNet"),
    spec("alexnet", "AlexNet"),
];

/// The model library whose own constructor rebuilds a recognised state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zoo {
    Torchvision,
    Timm,
}

impl Zoo {
    pub fn as_str(self) -> &'static str {
        match self {
            Zoo::Torchvision => "torchvision",
            Zoo::Timm => "timm",
        }
    }
}

/// A recognised state dict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchMatch {
    /// The library whose constructor builds it.
    pub zoo: Zoo,
    /// The library's builder name (`resnet50`, `convnext_tiny`): `torchvision.models.get_model(name)`
    /// / `timm.create_model(name)`.
    pub name: String,
    /// Output features of the final classifier (the `num_classes` constructor argument).
    pub num_classes: u64,
    /// Input channels of the first convolution (timm's `in_chans`; torchvision: always 3).
    pub in_channels: u64,
    /// From the table: whether the server compiles it.
    pub server_compilable: bool,
    /// Further constructor keyword arguments the state dict proves (`{"aux_loss": true}`), passed
    /// as they are; empty for most models.
    #[serde(default)]
    pub builder_kwargs: std::collections::BTreeMap<String, serde_json::Value>,
}

impl ArchMatch {
    /// `torchvision/resnet50`, `timm/convnext_tiny`: how the product names it everywhere.
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.zoo.as_str(), self.name)
    }
}

/// The table entry for a name.
pub fn spec_of(name: &str) -> Option<&'static ArchSpec> {
    ARCHITECTURES.iter().find(|a| a.name == name)
}

struct Shapes<'a>(HashMap<&'a str, &'a [u64]>);

impl<'a> Shapes<'a> {
    fn get(&self, k: &str) -> Option<&'a [u64]> {
        self.0.get(k).copied()
    }
    fn dim(&self, k: &str, i: usize) -> Option<u64> {
        self.get(k).and_then(|s| s.get(i).copied())
    }
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    /// Count of distinct `j` in keys `{prefix}{j}{suffix}`.
    fn count(&self, prefix: &str, suffix: &str) -> usize {
        let mut js: Vec<u64> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(prefix))
            .filter_map(|r| {
                r.split_once('.').and_then(|(j, rest)| {
                    (format!(".{rest}") == suffix || suffix.is_empty()).then_some(j)
                })
            })
            .filter_map(|j| j.parse().ok())
            .collect();
        js.sort_unstable();
        js.dedup();
        js.len()
    }
}

/// Recognise a torchvision architecture from a state dict's tensors.
pub fn recognise(tensors: &[TensorInfo]) -> Option<ArchMatch> {
    let s = Shapes(
        tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice()))
            .collect(),
    );
    let (name, nc, inc) = resnet(&s)
        .or_else(|| efficientnet(&s))
        .or_else(|| mobilenet_v2(&s))
        .or_else(|| densenet(&s))
        .or_else(|| vgg(&s))
        .or_else(|| squeezenet(&s))
        .or_else(|| alexnet(&s))?;
    let spec = spec_of(name)?;
    Some(ArchMatch {
        zoo: Zoo::Torchvision,
        name: name.to_string(),
        num_classes: nc,
        in_channels: inc,
        server_compilable: spec.server_compilable,
        builder_kwargs: Default::default(),
    })
}

type Found = (&'static str, u64, u64);

fn resnet(s: &Shapes<'_>) -> Option<Found> {
    if !(s.has("conv1.weight") && s.has("fc.weight") && s.has("layer4.0.conv1.weight")) {
        return None;
    }
    if s.dim("layer1.0.conv1.weight", 0)? != 64 || s.dim("conv1.weight", 0)? != 64 {
        return None;
    }
    let bottleneck = s.has("layer1.0.conv3.weight");
    if bottleneck && s.dim("layer1.0.conv2.weight", 1)? != 64 {
        return None; // ResNeXt / wide ResNet: different widths, not in the table.
    }
    let blocks: Vec<usize> = (1..=4)
        .map(|i| s.count(&format!("layer{i}."), ".conv1.weight"))
        .collect();
    let name = match (bottleneck, blocks.as_slice()) {
        (false, [2, 2, 2, 2]) => "resnet18",
        (false, [3, 4, 6, 3]) => "resnet34",
        (true, [3, 4, 6, 3]) => "resnet50",
        (true, [3, 4, 23, 3]) => "resnet101",
        (true, [3, 8, 36, 3]) => "resnet152",
        _ => return None,
    };
    Some((name, s.dim("fc.weight", 0)?, s.dim("conv1.weight", 1)?))
}

fn efficientnet(s: &Shapes<'_>) -> Option<Found> {
    if !(s.has("features.0.0.weight")
        && s.has("features.8.0.weight")
        && s.has("classifier.1.weight")
        && s.has("features.1.0.block.0.0.weight"))
    {
        return None;
    }
    let stem = s.dim("features.0.0.weight", 0)?;
    let last = s.dim("features.8.0.weight", 0)?;
    let blocks: Vec<usize> = (1..=7)
        .map(|i| s.count(&format!("features.{i}."), ""))
        .collect();
    let name = match (stem, last, blocks.as_slice()) {
        (32, 1280, [1, 2, 2, 3, 3, 4, 1]) => "efficientnet_b0",
        (32, 1280, [2, 3, 3, 4, 4, 5, 2]) => "efficientnet_b1",
        (32, 1408, [2, 3, 3, 4, 4, 5, 2]) => "efficientnet_b2",
        (40, 1536, [2, 3, 3, 5, 5, 6, 2]) => "efficientnet_b3",
        (48, 1792, [2, 4, 4, 6, 6, 8, 2]) => "efficientnet_b4",
        (48, 2048, [3, 5, 5, 7, 7, 9, 3]) => "efficientnet_b5",
        (56, 2304, [3, 6, 6, 8, 8, 11, 3]) => "efficientnet_b6",
        (64, 2560, [4, 7, 7, 10, 10, 13, 4]) => "efficientnet_b7",
        _ => return None,
    };
    Some((
        name,
        s.dim("classifier.1.weight", 0)?,
        s.dim("features.0.0.weight", 1)?,
    ))
}

fn mobilenet_v2(s: &Shapes<'_>) -> Option<Found> {
    if s.get("features.0.0.weight")?.first() != Some(&32)
        || s.get("features.18.0.weight")?.first() != Some(&1280)
        || s.dim("classifier.1.weight", 1)? != 1280
        || s.has("classifier.3.weight")
    {
        return None;
    }
    Some((
        "mobilenet_v2",
        s.dim("classifier.1.weight", 0)?,
        s.dim("features.0.0.weight", 1)?,
    ))
}

fn densenet(s: &Shapes<'_>) -> Option<Found> {
    if !(s.has("features.conv0.weight") && s.has("classifier.weight")) {
        return None;
    }
    let blocks: Vec<usize> = (1..=4)
        .map(|b| {
            let prefix = format!("features.denseblock{b}.denselayer");
            let mut n: Vec<u64> =
                s.0.keys()
                    .filter_map(|k| k.strip_prefix(prefix.as_str()))
                    .filter_map(|r| r.split_once('.').and_then(|(j, _)| j.parse().ok()))
                    .collect();
            n.sort_unstable();
            n.dedup();
            n.len()
        })
        .collect();
    let stem = s.dim("features.conv0.weight", 0)?;
    let name = match (stem, blocks.as_slice()) {
        (64, [6, 12, 24, 16]) => "densenet121",
        (96, [6, 12, 36, 24]) => "densenet161",
        (64, [6, 12, 32, 32]) => "densenet169",
        (64, [6, 12, 48, 32]) => "densenet201",
        _ => return None,
    };
    Some((
        name,
        s.dim("classifier.weight", 0)?,
        s.dim("features.conv0.weight", 1)?,
    ))
}

fn vgg(s: &Shapes<'_>) -> Option<Found> {
    if s.get("classifier.0.weight")? != [4096, 25088]
        || !s.has("classifier.6.weight")
        || !s.has("features.0.weight")
    {
        return None;
    }
    let convs =
        s.0.iter()
            .filter(|(k, v)| k.starts_with("features.") && k.ends_with(".weight") && v.len() == 4)
            .count();
    let bn =
        s.0.keys()
            .any(|k| k.starts_with("features.") && k.ends_with(".running_mean"));
    let name = match (convs, bn) {
        (8, false) => "vgg11",
        (10, false) => "vgg13",
        (13, false) => "vgg16",
        (16, false) => "vgg19",
        (8, true) => "vgg11_bn",
        (10, true) => "vgg13_bn",
        (13, true) => "vgg16_bn",
        (16, true) => "vgg19_bn",
        _ => return None,
    };
    Some((
        name,
        s.dim("classifier.6.weight", 0)?,
        s.dim("features.0.weight", 1)?,
    ))
}

fn squeezenet(s: &Shapes<'_>) -> Option<Found> {
    if !(s.has("features.3.squeeze.weight") && s.has("classifier.1.weight")) {
        return None;
    }
    let f0 = s.get("features.0.weight")?;
    let name = match (f0.first(), f0.get(2)) {
        (Some(96), Some(7)) => "squeezenet1_0",
        (Some(64), Some(3)) => "squeezenet1_1",
        _ => return None,
    };
    Some((
        name,
        s.dim("classifier.1.weight", 0)?,
        s.dim("features.0.weight", 1)?,
    ))
}

fn alexnet(s: &Shapes<'_>) -> Option<Found> {
    let f0 = s.get("features.0.weight")?;
    if f0.first() != Some(&64)
        || f0.get(2) != Some(&11)
        || s.get("classifier.1.weight")? != [4096, 9216]
    {
        return None;
    }
    Some((
        "alexnet",
        s.dim("classifier.6.weight", 0)?,
        f0.get(1).copied()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: "float32".into(),
            shape: shape.to_vec(),
            ..TensorInfo::default()
        }
    }

    #[test]
    fn resnet18_by_keys() {
        let mut ts = vec![t("conv1.weight", &[64, 3, 7, 7]), t("fc.weight", &[2, 512])];
        for i in 1..=4 {
            for j in 0..2 {
                ts.push(t(&format!("layer{i}.{j}.conv1.weight"), &[64, 64, 3, 3]));
            }
        }
        let m = recognise(&ts).expect("resnet18");
        assert_eq!(
            (m.name.as_str(), m.num_classes, m.in_channels),
            ("resnet18", 2, 3)
        );
        ts.pop();
        assert_eq!(recognise(&ts), None);
    }

    #[test]
    fn table_names_are_unique() {
        let mut names: Vec<_> = ARCHITECTURES.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ARCHITECTURES.len());
    }
}
