//! DenseNet 121/161/169/201 exactly as torchvision builds them.
//!
//! `tch::vision::densenet` (tch 0.24) has torchvision's parameter names, but its head is
//! `avg_pool2d([7, 7], …, divisor_override = 1)`: a 7×7 *sum*, not torchvision's
//! `adaptive_avg_pool2d((1, 1))` mean (hence the relative error of ~3e3 the compile tests
//! measured at 224×224), and it runs only on inputs whose features end 7×7. This follows
//! torchvision's `densenet.py` (DenseNet-BC, `bn_size` 4, dropout a no-op at inference) and is
//! compared with a real torchvision instance by tests/test_compile_e2e.py.
//! Adapted from tch-rs (Apache-2.0/MIT).

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// torchvision's `bn_size`: a dense layer's bottleneck is `bn_size × growth` channels wide.
const BN_SIZE: i64 = 4;

/// Convolution without bias, stride 1 unless given (every DenseNet convolution has no bias).
fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        k,
        nn::ConvConfig {
            stride,
            padding,
            bias: false,
            ..Default::default()
        },
    )
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// `features.denseblockN.denselayerM`: norm1 → relu → conv1 (1×1) → norm2 → relu → conv2
/// (3×3), giving `growth` new channels.
#[derive(Debug)]
struct DenseLayer {
    norm1: nn::BatchNorm,
    conv1: nn::Conv2D,
    norm2: nn::BatchNorm,
    conv2: nn::Conv2D,
}

impl DenseLayer {
    fn new(p: nn::Path, c_in: i64, growth: i64) -> Self {
        let inter = BN_SIZE * growth;
        DenseLayer {
            norm1: bn(&p / "norm1", c_in),
            conv1: conv(&p / "conv1", c_in, inter, 1, 1, 0),
            norm2: bn(&p / "norm2", inter),
            conv2: conv(&p / "conv2", inter, growth, 3, 1, 1),
        }
    }
}

impl ModuleT for DenseLayer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply_t(&self.norm1, train)
            .relu()
            .apply(&self.conv1)
            .apply_t(&self.norm2, train)
            .relu()
            .apply(&self.conv2)
    }
}

/// `features.denseblockN`: every layer sees the concatenation of the block's input and all
/// earlier layers' outputs; the block returns that concatenation with the last layer's output.
#[derive(Debug)]
struct DenseBlock(Vec<DenseLayer>);

impl ModuleT for DenseBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut features = xs.shallow_clone();
        for layer in &self.0 {
            let new = features.apply_t(layer, train);
            features = Tensor::cat(&[features, new], 1);
        }
        features
    }
}

/// `features.transitionN`: norm → relu → conv (1×1) → 2×2 average pool, stride 2.
fn transition(p: nn::Path, c_in: i64, c_out: i64) -> nn::SequentialT {
    nn::seq_t()
        .add(bn(&p / "norm", c_in))
        .add_fn(|x| x.relu())
        .add(conv(&p / "conv", c_in, c_out, 1, 1, 0))
        .add_fn(|x| x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None))
}

/// torchvision `DenseNet(growth_rate, block_config, num_init_features)`.
fn densenet(
    p: &nn::Path,
    growth: i64,
    blocks: &[i64],
    init_features: i64,
    num_classes: i64,
) -> nn::SequentialT {
    let f = p / "features";
    let mut seq = nn::seq_t()
        .add(conv(&f / "conv0", 3, init_features, 7, 2, 3))
        .add(bn(&f / "norm0", init_features))
        .add_fn(|x| x.relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false));
    let mut c = init_features;
    for (i, &layers) in blocks.iter().enumerate() {
        let bp = &f / format!("denseblock{}", i + 1);
        let block = (0..layers)
            .map(|j| DenseLayer::new(&bp / format!("denselayer{}", j + 1), c + j * growth, growth))
            .collect();
        seq = seq.add(DenseBlock(block));
        c += layers * growth;
        if i + 1 != blocks.len() {
            seq = seq.add(transition(&f / format!("transition{}", i + 1), c, c / 2));
            c /= 2;
        }
    }
    seq.add(bn(&f / "norm5", c))
        .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(
            p / "classifier",
            c,
            num_classes,
            Default::default(),
        ))
}

/// Builds `densenet121/161/169/201`; `None` for another depth.
pub fn build(depth: u16, p: &nn::Path, num_classes: i64) -> Option<nn::SequentialT> {
    let (growth, blocks, init): (i64, &[i64], i64) = match depth {
        121 => (32, &[6, 12, 24, 16], 64),
        161 => (48, &[6, 12, 36, 24], 96),
        169 => (32, &[6, 12, 32, 32], 64),
        201 => (32, &[6, 12, 48, 32], 64),
        _ => return None,
    };
    Some(densenet(p, growth, blocks, init, num_classes))
}
