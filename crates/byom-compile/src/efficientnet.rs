//! EfficientNet B0–B7 exactly as torchvision builds them.
//!
//! `tch::vision::efficientnet` has torchvision's parameter names but TensorFlow's graph
//! ("same" padding, batch-norm eps 1e-3), so a torchvision state dict loads into it and then
//! computes something else (relative error ~1e-3 on ResNet-sized inputs, found by the compile
//! tests). This is the same structure with torchvision's symmetric padding and eps 1e-5.
//! Adapted from tch-rs (Apache-2.0/MIT).

use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy)]
struct Stage {
    expand_ratio: f64,
    kernel: i64,
    stride: i64,
    input_channels: i64,
    out_channels: i64,
    num_layers: i64,
}

/// torchvision's `_make_divisible`.
fn make_divisible(v: f64, divisor: i64) -> i64 {
    let new_v = i64::max(
        divisor,
        (v + divisor as f64 * 0.5) as i64 / divisor * divisor,
    );
    if (new_v as f64) < 0.9 * v {
        new_v + divisor
    } else {
        new_v
    }
}

fn stages(width: f64, depth: f64) -> Vec<Stage> {
    let s = |expand_ratio, kernel, stride, i: i64, o: i64, n: i64| Stage {
        expand_ratio,
        kernel,
        stride,
        input_channels: make_divisible(i as f64 * width, 8),
        out_channels: make_divisible(o as f64 * width, 8),
        num_layers: (n as f64 * depth).ceil() as i64,
    };
    vec![
        s(1., 3, 1, 32, 16, 1),
        s(6., 3, 2, 16, 24, 2),
        s(6., 5, 2, 24, 40, 2),
        s(6., 3, 2, 40, 80, 3),
        s(6., 5, 1, 80, 112, 3),
        s(6., 5, 2, 112, 192, 4),
        s(6., 3, 1, 192, 320, 1),
    ]
}

/// Conv (no bias) + batch norm + optional SiLU, torchvision's `Conv2dNormActivation`.
fn cna(
    p: nn::Path,
    i: i64,
    o: i64,
    k: i64,
    stride: i64,
    groups: i64,
    act: bool,
) -> nn::SequentialT {
    let conv = nn::ConvConfig {
        stride,
        groups,
        bias: false,
        padding: (k - 1) / 2,
        ..Default::default()
    };
    let seq = nn::seq_t()
        .add(nn::conv2d(&p / 0, i, o, k, conv))
        .add(nn::batch_norm2d(&p / 1, o, Default::default()));
    if act {
        seq.add_fn(|x| x.silu())
    } else {
        seq
    }
}

struct MbConv {
    expand: Option<nn::SequentialT>,
    depthwise: nn::SequentialT,
    se_fc1: nn::Conv2D,
    se_fc2: nn::Conv2D,
    project: nn::SequentialT,
    residual: bool,
}

impl std::fmt::Debug for MbConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MbConv")
    }
}

impl MbConv {
    fn new(p: nn::Path, c: Stage) -> Self {
        let p = &p / "block";
        let exp = make_divisible(c.input_channels as f64 * c.expand_ratio, 8);
        let expand =
            (exp != c.input_channels).then(|| cna(&p / 0, c.input_channels, exp, 1, 1, 1, true));
        let at = i64::from(expand.is_some());
        let depthwise = cna(&p / at, exp, exp, c.kernel, c.stride, exp, true);
        let squeeze = i64::max(1, c.input_channels / 4);
        let se = &p / (at + 1);
        let se_fc1 = nn::conv2d(&se / "fc1", exp, squeeze, 1, Default::default());
        let se_fc2 = nn::conv2d(&se / "fc2", squeeze, exp, 1, Default::default());
        let project = cna(&p / (at + 2), exp, c.out_channels, 1, 1, 1, false);
        MbConv {
            expand,
            depthwise,
            se_fc1,
            se_fc2,
            project,
            residual: c.stride == 1 && c.input_channels == c.out_channels,
        }
    }
}

impl ModuleT for MbConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = match &self.expand {
            Some(e) => xs.apply_t(e, train),
            None => xs.shallow_clone(),
        };
        let ys = ys.apply_t(&self.depthwise, train);
        let scale = ys
            .adaptive_avg_pool2d([1, 1])
            .apply(&self.se_fc1)
            .silu()
            .apply(&self.se_fc2)
            .sigmoid();
        let ys = (ys * scale).apply_t(&self.project, train);
        // Stochastic depth is the identity at inference.
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

/// EfficientNet with width/depth multipliers (B0: 1.0/1.0 … B7: 2.0/3.1).
fn efficientnet(p: &nn::Path, width: f64, depth: f64, num_classes: i64) -> nn::SequentialT {
    let cfg = stages(width, depth);
    let f = p / "features";
    let first = cfg.first().map_or(32, |c| c.input_channels);
    let last = cfg.last().map_or(320, |c| c.out_channels);
    let mut seq = nn::seq_t().add(cna(&f / 0, 3, first, 3, 2, 1, true));
    for (index, stage) in cfg.iter().enumerate() {
        let sp = &f / (index + 1);
        for layer in 0..stage.num_layers {
            let c = if layer == 0 {
                *stage
            } else {
                Stage {
                    input_channels: stage.out_channels,
                    stride: 1,
                    ..*stage
                }
            };
            seq = seq.add(MbConv::new(&sp / layer, c));
        }
    }
    seq.add(cna(&f / (cfg.len() + 1), last, 4 * last, 1, 1, 1, true))
        .add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(
            p / "classifier" / 1,
            4 * last,
            num_classes,
            Default::default(),
        ))
}

/// Builds `efficientnet_b{0..7}`; `None` for another variant.
pub fn build(variant: u8, p: &nn::Path, num_classes: i64) -> Option<nn::SequentialT> {
    let (w, d) = match variant {
        0 => (1.0, 1.0),
        1 => (1.0, 1.1),
        2 => (1.1, 1.2),
        3 => (1.2, 1.4),
        4 => (1.4, 1.8),
        5 => (1.6, 2.2),
        6 => (1.8, 2.6),
        7 => (2.0, 3.1),
        _ => return None,
    };
    Some(efficientnet(p, w, d, num_classes))
}
