//! The post-processing types the edge runtime knows (`manifest.json` `postprocessing.type`).
//!
//! Why one list: the names used to be written out in five places (the BYOM512 check, its hint
//! and doc, the CLI help, the page's `<select>`), and a sixth copy held the page's default per
//! model type. The names are listed once, in the `post_processing!` invocation below; the enum,
//! its string forms, the comma-separated lists used in rule texts (compile-time literals, hence
//! the macro) and the wasm face's `postProcessingTypes()` all come from it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! post_processing {
    ($(#[doc = $d0:literal])* $v0:ident = $n0:literal
     $(, $(#[doc = $d:literal])* $v:ident = $n:literal)* $(,)?) => {
        /// A `postprocessing.type` the edge runtime knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum PostProcessing {
            $(#[doc = $d0])* $v0,
            $($(#[doc = $d])* $v,)*
        }

        impl PostProcessing {
            /// Every type, in the order the guide lists them.
            pub const ALL: &'static [PostProcessing] =
                &[PostProcessing::$v0 $(, PostProcessing::$v)*];

            /// The name written in `manifest.json`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    PostProcessing::$v0 => $n0,
                    $(PostProcessing::$v => $n,)*
                }
            }
        }

        /// The TypeScript type of the names, for the wasm face's `.d.ts` (the same one list).
        pub const TYPESCRIPT: &str = concat!(
            "export type PostProcessing = \"", $n0, "\"" $(, " | \"", $n, "\"")*, ";\n"
        );

        /// The names as one string literal, `softmax, argmax, ...` (for `concat!` in rule texts).
        macro_rules! post_processing_names {
            () => { concat!($n0 $(, ", ", $n)*) };
        }
        /// The names in Markdown code spans, `` `softmax`, `argmax`, ... ``.
        macro_rules! post_processing_names_code {
            () => { concat!("`", $n0, "`" $(, ", `", $n, "`")*) };
        }
        pub(crate) use post_processing_names;
        pub(crate) use post_processing_names_code;
    };
}

post_processing!(
    /// Class probabilities (classifiers).
    Softmax = "softmax",
    /// The index of the highest score.
    Argmax = "argmax",
    /// YOLO box decoding and non-maximum suppression (object detection).
    YoloNms = "yolo_nms",
    /// One anomaly score per image (anomaly detection).
    AnomalyScore = "anomaly_score",
    /// The class of each pixel (semantic segmentation).
    ArgmaxPerPixel = "argmax_per_pixel",
);

/// `"softmax, argmax, yolo_nms, anomaly_score, argmax_per_pixel"`.
pub const NAMES: &str = post_processing_names!();

impl PostProcessing {
    /// The usual post-processing for a stage type (`mochi.json` `type`); softmax for a type
    /// without a more specific one. The page's builder preselects this.
    pub fn default_for(model_type: &str) -> PostProcessing {
        match model_type {
            "anomaly_detection" => PostProcessing::AnomalyScore,
            "semantic_segmentation" => PostProcessing::ArgmaxPerPixel,
            "object_detection" => PostProcessing::YoloNms,
            _ => PostProcessing::Softmax,
        }
    }
}

impl fmt::Display for PostProcessing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a known post-processing type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown post-processing {0:?}: expected one of {NAMES}")]
pub struct UnknownPostProcessing(pub String);

impl FromStr for PostProcessing {
    type Err = UnknownPostProcessing;

    /// Exact names only: the runtime matches them exactly, so `Softmax` would be ignored there.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PostProcessing::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPostProcessing(s.to_string()))
    }
}

impl Serialize for PostProcessing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PostProcessing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_lists_agree() {
        for p in PostProcessing::ALL {
            assert_eq!(p.as_str().parse::<PostProcessing>(), Ok(*p));
            assert_eq!(serde_json::to_string(p).unwrap(), format!("\"{p}\""));
        }
        let joined: Vec<&str> = PostProcessing::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(NAMES, joined.join(", "));
        assert_eq!(
            TYPESCRIPT,
            "export type PostProcessing = \"softmax\" | \"argmax\" | \"yolo_nms\" | \"anomaly_score\" | \"argmax_per_pixel\";\n"
        );
        assert_eq!(
            post_processing_names_code!(),
            "`softmax`, `argmax`, `yolo_nms`, `anomaly_score`, `argmax_per_pixel`"
        );
    }

    #[test]
    fn unknown_and_miscased_names_are_refused() {
        for bad in ["Softmax", "nms", "", " softmax"] {
            let e = bad.parse::<PostProcessing>().unwrap_err();
            assert!(
                e.to_string().contains("expected one of softmax, argmax"),
                "{e}"
            );
        }
        let e = serde_json::from_str::<PostProcessing>("\"sigmoid\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown post-processing \"sigmoid\""),
            "{e}"
        );
    }

    #[test]
    fn defaults_per_model_type() {
        for (model_type, expected) in [
            ("classification", PostProcessing::Softmax),
            ("object_detection", PostProcessing::YoloNms),
            ("semantic_segmentation", PostProcessing::ArgmaxPerPixel),
            ("anomaly_detection", PostProcessing::AnomalyScore),
            ("multi_class_classification", PostProcessing::Softmax),
        ] {
            assert_eq!(
                PostProcessing::default_for(model_type),
                expected,
                "{model_type}"
            );
        }
    }
}
