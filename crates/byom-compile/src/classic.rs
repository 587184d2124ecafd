//! AlexNet and VGG exactly as torchvision builds them.
//!
//! tch's builders have torchvision's parameter names but not its graph: its AlexNet's second
//! convolution uses stride 2 / padding 1 (torchvision: stride 1 / padding 2), and its VGG has
//! no `AdaptiveAvgPool2d((7, 7))`, so it only runs on 224×224 inputs. Both were found by the
//! compile tests comparing with real torchvision; these builders follow torchvision.
//! Adapted from tch-rs (Apache-2.0/MIT).

use tch::nn::{self, SequentialT};

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        k,
        nn::ConvConfig {
            stride,
            padding,
            ..Default::default()
        },
    )
}

/// The three-layer classifier both share (`classifier.{1,4,6}`, dropout at inference is a no-op).
fn classifier(seq: SequentialT, c: &nn::Path, features: i64, num_classes: i64) -> SequentialT {
    seq.add_fn(|x| x.flatten(1, -1))
        .add(nn::linear(c / "1", features, 4096, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(c / "4", 4096, 4096, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(c / "6", 4096, num_classes, Default::default()))
}

/// torchvision `alexnet`.
pub fn alexnet(p: &nn::Path, num_classes: i64) -> SequentialT {
    let f = p / "features";
    let pool = |x: &tch::Tensor| x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
    let seq = nn::seq_t()
        .add(conv(&f / "0", 3, 64, 11, 4, 2))
        .add_fn(|x| x.relu())
        .add_fn(pool)
        .add(conv(&f / "3", 64, 192, 5, 1, 2))
        .add_fn(|x| x.relu())
        .add_fn(pool)
        .add(conv(&f / "6", 192, 384, 3, 1, 1))
        .add_fn(|x| x.relu())
        .add(conv(&f / "8", 384, 256, 3, 1, 1))
        .add_fn(|x| x.relu())
        .add(conv(&f / "10", 256, 256, 3, 1, 1))
        .add_fn(|x| x.relu())
        .add_fn(pool)
        .add_fn(|x| x.adaptive_avg_pool2d([6, 6]));
    classifier(seq, &(p / "classifier"), 256 * 6 * 6, num_classes)
}

/// torchvision `vgg11/13/16/19` (`_bn` with `batch_norm`); the classifier's linear layers are
/// `classifier.{0,3,6}` there.
pub fn vgg(p: &nn::Path, depth: u8, batch_norm: bool, num_classes: i64) -> Option<SequentialT> {
    let cfg: &[&[i64]] = match depth {
        11 => &[&[64], &[128], &[256, 256], &[512, 512], &[512, 512]],
        13 => &[
            &[64, 64],
            &[128, 128],
            &[256, 256],
            &[512, 512],
            &[512, 512],
        ],
        16 => &[
            &[64, 64],
            &[128, 128],
            &[256, 256, 256],
            &[512, 512, 512],
            &[512, 512, 512],
        ],
        19 => &[
            &[64, 64],
            &[128, 128],
            &[256, 256, 256, 256],
            &[512, 512, 512, 512],
            &[512, 512, 512, 512],
        ],
        _ => return None,
    };
    let f = p / "features";
    let c = p / "classifier";
    let mut seq = nn::seq_t();
    let mut index = 0usize;
    let mut c_in = 3;
    for block in cfg {
        for &c_out in *block {
            seq = seq.add(conv(&f / index, c_in, c_out, 3, 1, 1));
            index += 1;
            if batch_norm {
                seq = seq.add(nn::batch_norm2d(&f / index, c_out, Default::default()));
                index += 1;
            }
            seq = seq.add_fn(|x| x.relu());
            index += 1;
            c_in = c_out;
        }
        seq = seq.add_fn(|x| x.max_pool2d_default(2));
        index += 1;
    }
    Some(
        seq.add_fn(|x| x.adaptive_avg_pool2d([7, 7]).flatten(1, -1))
            .add(nn::linear(&c / "0", 512 * 7 * 7, 4096, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&c / "3", 4096, 4096, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&c / "6", 4096, num_classes, Default::default())),
    )
}
