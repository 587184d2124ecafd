//! Detector outputs compared as sets of detections, not as ordered rows.
//!
//! A detector in byom's documented layout (docs/detectors.md) returns `[B, rows, 6]`:
//! `(x1, y1, x2, y2, score, label)` per detection, best score first, zero rows after the last.
//! Comparing those rows in order fails on a correct artifact whenever scores tie: freezing
//! folds batch norms and changes the last bits, so detections whose scores are equal to five
//! digits (common on the compiler's fixed input, and with random weights) come out in another
//! order, and at the row limit another of the tied detections is the one kept. Seen on
//! torchvision SSDlite: the last rows, all scored 0.22031, permuted, "max rel error 0.9".
//!
//! So detections are matched as sets: each reference row with the closest row of the same
//! label, box and score within tolerance. A row left over on either side is explained only as
//! a tie: both outputs full and its score tying with the lowest score the other side kept (the
//! row limit cut through tied detections), or its score tying with an overlapping detection of
//! its label that the other side kept instead, with more ties of that score on both sides
//! (non-maximum suppression broke the tie the other way). Anything else is a real difference.
//!
//! Matching is wider than the target's tolerance: a detector decodes each box as
//! `anchor_size * exp(regression)`, with the regression clipped at `log(1000 / 16)` (torchvision's
//! `bbox_xform_clip`), so an error in the regression reaches the box multiplied by up to
//! 1000 / 16 = 62.5; a two-stage detector then scores features pooled inside those decoded
//! proposals, so the scores inherit it. Seen with random weights after freezing: Faster R-CNN
//! v2, the same 31 rows in the same order, boxes 0.02 px apart on a 32 px image (6e-4 of it);
//! Mask R-CNN, a score 0.48659 against 0.48603. Boxes match within tolerance x 62.5 of the
//! largest coordinate, scores (in [0, 1]) within tolerance x 62.5 absolutely, labels exactly;
//! a *tie* between scores stays within the tolerance itself.

/// How much a box decode can amplify a regression's error: `exp(log(1000 / 16))`.
pub const BOX_DECODE_GAIN: f64 = 1000.0 / 16.0;

/// Values per detection row.
pub const ROW: usize = 6;
const SCORE: usize = 4;
const LABEL: usize = 5;

/// The shape of a detection output: `[images, rows, 6]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub images: usize,
    pub rows: usize,
}

impl Layout {
    /// The layout of an output of `shape`, when it is `[B, rows, 6]`.
    pub fn of(shape: &[i64]) -> Option<Self> {
        match shape {
            &[b, rows, 6] if b > 0 && rows > 0 => Some(Layout {
                images: usize::try_from(b).ok()?,
                rows: usize::try_from(rows).ok()?,
            }),
            _ => None,
        }
    }
}

/// How two detection outputs compare.
#[derive(Debug, Clone, PartialEq)]
pub struct SetParity {
    /// Over matched rows: the largest box coordinate difference, absolute and relative to the
    /// reference's largest coordinate, and the largest score difference.
    pub box_abs: f64,
    pub box_rel: f64,
    pub score_abs: f64,
    /// Detections of the reference (all images).
    pub detections: usize,
    pub matched: usize,
    /// Matched with a row at another position (tied scores reordered).
    pub reordered: usize,
    /// Left over on either side, tied in score at the row limit.
    pub tied_at_limit: usize,
    /// Left over on either side, tied in score with an overlapping detection of the same label
    /// that the other side kept instead.
    pub tied_in_suppression: usize,
    /// Left over and not explained: the outputs differ.
    pub unexplained: usize,
}

impl SetParity {
    /// Whether the outputs agree: every detection matched or explained as a tie.
    pub fn agrees(&self) -> bool {
        self.unexplained == 0
    }

    /// One line for the job's log.
    pub fn describe(&self, tolerance: f64) -> String {
        format!(
            "{} of {} detections matched ({} at another position), {} tied in score at the row \
             limit, {} tied in score with an overlapping detection kept instead, {} differing; \
             boxes within {:.3e} of the largest coordinate, scores within {:.3e} (tolerance \
             {tolerance:.0e} x {BOX_DECODE_GAIN} for box decoding)",
            self.matched,
            self.detections,
            self.reordered,
            self.tied_at_limit,
            self.tied_in_suppression,
            self.unexplained,
            self.box_rel,
            self.score_abs,
        )
    }
}

/// Compares `other` with `reference` (both `layout`, flattened) as sets of detections; `None`
/// when either does not have the layout's size. `tolerance` is the target's relative one: boxes
/// within `tolerance * BOX_DECODE_GAIN` of the reference's largest coordinate, scores within
/// `tolerance * BOX_DECODE_GAIN`, and a tie between scores within `tolerance`.
pub fn compare(
    reference: &[f32],
    other: &[f32],
    layout: Layout,
    tolerance: f64,
) -> Option<SetParity> {
    let per_image = layout.rows.checked_mul(ROW)?;
    let size = layout.images.checked_mul(per_image)?;
    if reference.len() != size || other.len() != size {
        return None;
    }
    let box_scale = reference
        .chunks_exact(ROW)
        .flat_map(|r| &r[..SCORE])
        .filter(|v| v.is_finite())
        .fold(1f64, |m, &v| m.max(f64::from(v).abs()));
    let limits = Limits {
        boxes: tolerance * BOX_DECODE_GAIN * box_scale,
        scores: tolerance * BOX_DECODE_GAIN,
        tie: tolerance.max(f64::EPSILON),
    };
    let mut parity = SetParity {
        box_abs: 0.0,
        box_rel: 0.0,
        score_abs: 0.0,
        detections: 0,
        matched: 0,
        reordered: 0,
        tied_at_limit: 0,
        tied_in_suppression: 0,
        unexplained: 0,
    };
    for (want, got) in reference
        .chunks_exact(per_image)
        .zip(other.chunks_exact(per_image))
    {
        let want = detections(want);
        let got = detections(got);
        parity.detections += want.len();
        let mut taken = vec![false; got.len()];
        let mut left_want = Vec::new();
        // In reference order (best score first), so a tie at the limit leaves the lowest over.
        for (i, w) in want.iter().enumerate() {
            // The row at the same position first: reordering is the exception.
            let same_place = (i < got.len() && !taken[i])
                .then(|| (i, limits.distance(w, &got[i])))
                .filter(|(_, d)| d.fits());
            let best = same_place.or_else(|| {
                got.iter()
                    .enumerate()
                    .filter(|(j, g)| !taken[*j] && g[LABEL] == w[LABEL])
                    .map(|(j, g)| (j, limits.distance(w, g)))
                    .filter(|(_, d)| d.fits())
                    .min_by(|a, b| a.1.worst.total_cmp(&b.1.worst))
            });
            match best {
                Some((j, d)) => {
                    taken[j] = true;
                    parity.matched += 1;
                    parity.reordered += usize::from(j != i);
                    parity.box_abs = parity.box_abs.max(d.boxes);
                    parity.score_abs = parity.score_abs.max(d.score);
                }
                None => left_want.push(*w),
            }
        }
        let left_got: Vec<&[f32; ROW]> = got
            .iter()
            .zip(&taken)
            .filter(|(_, &t)| !t)
            .map(|(g, _)| g)
            .collect();
        // A row one side kept and the other did not is a tie when (1) both outputs are full
        // and its score ties with the lowest score the other side kept (where the other
        // side's cut fell), or (2) its score ties with an overlapping detection of its label
        // that the other side kept instead -- non-maximum suppression broke the tie the other
        // way (which of two equal scores suppresses the other depends on their order) -- and
        // ties are visibly in play: each side holds another detection of that label and score.
        // Anything else, a lone box that moved among them, really differs.
        let in_tie_group = |rows: &[[f32; ROW]], r: &[f32; ROW]| {
            rows.iter().filter(|x| limits.tied(x, r)).count() >= 2
        };
        let full = want.len() == layout.rows && got.len() == layout.rows;
        let leftovers = [
            (left_want.iter().collect::<Vec<_>>(), &want, &got),
            (left_got, &got, &want),
        ];
        for (rows, own, other) in leftovers {
            let floor = lowest_score(other);
            for row in rows {
                if full && (f64::from(row[SCORE]) - floor).abs() <= limits.tie {
                    parity.tied_at_limit += 1;
                } else if in_tie_group(own, row)
                    && other
                        .iter()
                        .any(|o| overlap(row, o) && limits.tied(row, o) && in_tie_group(other, o))
                {
                    parity.tied_in_suppression += 1;
                } else {
                    parity.unexplained += 1;
                }
            }
        }
    }
    parity.box_rel = parity.box_abs / box_scale;
    Some(parity)
}

struct Limits {
    boxes: f64,
    scores: f64,
    /// Two scores this close are a tie.
    tie: f64,
}

struct Distance {
    boxes: f64,
    score: f64,
    /// The larger of the two, each as a fraction of its limit.
    worst: f64,
}

impl Distance {
    fn fits(&self) -> bool {
        self.worst <= 1.0
    }
}

impl Limits {
    /// Same label, tied scores.
    fn tied(&self, a: &[f32; ROW], b: &[f32; ROW]) -> bool {
        a[LABEL] == b[LABEL] && (f64::from(a[SCORE]) - f64::from(b[SCORE])).abs() <= self.tie
    }

    /// How far apart two rows are; a NaN or another label never fits.
    fn distance(&self, a: &[f32; ROW], b: &[f32; ROW]) -> Distance {
        let diff = |x: f32, y: f32| {
            let d = (f64::from(x) - f64::from(y)).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        };
        let boxes = (0..SCORE).map(|k| diff(a[k], b[k])).fold(0.0, f64::max);
        let score = diff(a[SCORE], b[SCORE]);
        let label = if a[LABEL] == b[LABEL] {
            0.0
        } else {
            f64::INFINITY
        };
        Distance {
            boxes,
            score,
            worst: (boxes / self.boxes).max(score / self.scores).max(label),
        }
    }
}

/// The detection rows of one image: those with a non-zero score (zero rows pad the output).
fn detections(image: &[f32]) -> Vec<[f32; ROW]> {
    image
        .chunks_exact(ROW)
        .filter(|r| r[SCORE] != 0.0)
        .map(|r| [r[0], r[1], r[2], r[3], r[4], r[5]])
        .collect()
}

/// Whether two boxes `(x1, y1, x2, y2)` share any area.
fn overlap(a: &[f32; ROW], b: &[f32; ROW]) -> bool {
    a[0].max(b[0]) < a[2].min(b[2]) && a[1].max(b[1]) < a[3].min(b[3])
}

fn lowest_score(rows: &[[f32; ROW]]) -> f64 {
    rows.iter()
        .map(|r| f64::from(r[SCORE]))
        .fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout { images: 1, rows: 4 };

    fn out(rows: &[[f32; ROW]]) -> Vec<f32> {
        let mut v: Vec<f32> = rows.iter().flatten().copied().collect();
        v.resize(LAYOUT.rows * ROW, 0.0);
        v
    }

    #[test]
    fn permuted_tied_rows_match_as_sets() {
        let a = [0.0, 0.0, 10.0, 10.0, 0.9, 1.0];
        let b = [5.0, 5.0, 15.0, 15.0, 0.5, 1.0];
        let c = [7.0, 7.0, 17.0, 17.0, 0.5, 2.0];
        let p = compare(&out(&[a, b, c]), &out(&[a, c, b]), LAYOUT, 1e-4).unwrap();
        assert_eq!((p.matched, p.tied_at_limit, p.unexplained), (3, 0, 0));
        assert!(p.agrees() && p.box_abs == 0.0 && p.reordered == 2, "{p:?}");
    }

    #[test]
    fn another_tied_row_kept_at_the_limit_is_explained() {
        let rows = |last: [f32; ROW]| {
            out(&[
                [0.0, 0.0, 10.0, 10.0, 0.9, 1.0],
                [1.0, 0.0, 10.0, 10.0, 0.8, 1.0],
                [2.0, 0.0, 10.0, 10.0, 0.7, 1.0],
                last,
            ])
        };
        let p = compare(
            &rows([3.0, 0.0, 10.0, 10.0, 0.25, 1.0]),
            &rows([9.0, 0.0, 19.0, 10.0, 0.25, 1.0]),
            LAYOUT,
            1e-4,
        )
        .unwrap();
        assert_eq!((p.matched, p.tied_at_limit, p.unexplained), (3, 2, 0));
        assert!(p.agrees());
    }

    #[test]
    fn a_moved_box_a_missing_row_or_another_label_differ() {
        let a = [0.0, 0.0, 10.0, 10.0, 0.9, 1.0];
        let b = [5.0, 5.0, 15.0, 15.0, 0.5, 1.0];
        let moved = [5.0, 5.0, 15.5, 15.0, 0.5, 1.0];
        let relabelled = [5.0, 5.0, 15.0, 15.0, 0.5, 3.0];
        for other in [out(&[a, moved]), out(&[a]), out(&[a, relabelled])] {
            let p = compare(&out(&[a, b]), &other, LAYOUT, 1e-4).unwrap();
            assert!(!p.agrees(), "{p:?}");
            assert!(p.unexplained >= 1, "{p:?}");
        }
        // A leftover that does not tie with the lowest kept score is a difference even when
        // both outputs are full.
        let full = |x: [f32; ROW]| out(&[a, a, a, x]);
        let p = compare(
            &full([1.0, 1.0, 2.0, 2.0, 0.8, 1.0]),
            &full([1.0, 1.0, 2.0, 2.0, 0.7, 1.0]),
            LAYOUT,
            1e-4,
        )
        .unwrap();
        assert_eq!((p.tied_at_limit, p.unexplained), (0, 2), "{p:?}");
        // NMS broke a tie the other way: two overlapping boxes of one label, equal scores, one
        // kept on each side. Not overlapping, or not tied, is a difference.
        // (A third detection of that label and score shows ties are in play.)
        let first = [0.0, 0.0, 10.0, 10.0, 0.5, 1.0];
        let second = [5.0, 5.0, 15.0, 15.0, 0.5, 1.0];
        let third = [40.0, 40.0, 50.0, 50.0, 0.5, 1.0];
        let p = compare(
            &out(&[a, first, third]),
            &out(&[a, second, third]),
            LAYOUT,
            1e-4,
        )
        .unwrap();
        assert_eq!((p.tied_in_suppression, p.unexplained), (2, 0), "{p:?}");
        let apart = [20.0, 20.0, 30.0, 30.0, 0.5, 1.0];
        let lower = [5.0, 5.0, 15.0, 15.0, 0.4, 1.0];
        for other in [apart, lower] {
            let p = compare(
                &out(&[a, first, third]),
                &out(&[a, other, third]),
                LAYOUT,
                1e-4,
            )
            .unwrap();
            assert_eq!(p.unexplained, 2, "{p:?}");
        }
        // Without a tie group, a box that moved keeping its score is a difference.
        let p = compare(&out(&[a, first]), &out(&[a, second]), LAYOUT, 1e-4).unwrap();
        assert_eq!(p.unexplained, 2, "{p:?}");
    }

    #[test]
    fn boxes_and_scores_get_the_decode_gain() {
        let a = [0.0, 0.0, 10.0, 10.0, 0.9, 1.0];
        // 0.05 of a 10 px box: within 1e-4 x 62.5 x 10 = 0.0625.
        let near = [0.05, 0.0, 10.0, 10.0, 0.9, 1.0];
        let p = compare(&out(&[a]), &out(&[near]), LAYOUT, 1e-4).unwrap();
        assert!(p.agrees() && (p.box_rel - 0.005).abs() < 1e-6, "{p:?}");
        let far = [0.07, 0.0, 10.0, 10.0, 0.9, 1.0];
        let rescored = [0.0, 0.0, 10.0, 10.0, 0.91, 1.0];
        for other in [far, rescored] {
            let p = compare(&out(&[a]), &out(&[other]), LAYOUT, 1e-4).unwrap();
            assert!(!p.agrees(), "{p:?}");
        }
    }

    #[test]
    fn nan_never_matches_and_sizes_must_agree() {
        let a = [0.0, 0.0, 10.0, 10.0, 0.9, 1.0];
        let nan = [f32::NAN, 0.0, 10.0, 10.0, 0.9, 1.0];
        let p = compare(&out(&[a]), &out(&[nan]), LAYOUT, 1e-4).unwrap();
        assert!(!p.agrees());
        assert!(compare(&out(&[a]), &out(&[a])[..6], LAYOUT, 1e-4).is_none());
        assert_eq!(
            Layout::of(&[1, 100, 6]),
            Some(Layout {
                images: 1,
                rows: 100
            })
        );
        assert_eq!(Layout::of(&[1, 84, 8400]), None);
    }
}
