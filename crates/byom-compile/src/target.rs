//! Compilation targets, and the runtime each one is assumed to ship (see docs/targets.md).

use std::fmt;
use std::str::FromStr;

use byom_core::TorchVersion;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A deployment target of the BYOM guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    X86_64Cpu,
    X86_64Cuda,
    Arm64Cpu,
    JetsonXavier,
}

/// Numeric precision of an artifact's weights (a target's nominal one, or what a model stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
    Fp64,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
            Precision::Fp64 => "fp64",
        }
    }

    /// The torch dtype of a model input in this precision (`deployment.json`'s `input.dtype`).
    pub fn dtype(self) -> &'static str {
        match self {
            Precision::Fp32 => "float32",
            Precision::Fp16 => "float16",
            Precision::Bf16 => "bfloat16",
            Precision::Fp64 => "float64",
        }
    }

    /// Largest relative error (against the original, normalised by the output's magnitude)
    /// that still counts as "the same model". fp16 keeps ~3 decimal digits.
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::Fp32 | Precision::Fp64 => 1e-4,
            Precision::Fp16 => 1e-2,
            Precision::Bf16 => 1e-2,
        }
    }

    /// 16-bit floats: what x86 and arm64 CPUs run far slower than fp32 in libtorch.
    pub fn is_half(self) -> bool {
        matches!(self, Precision::Fp16 | Precision::Bf16)
    }
}

/// The torch runtime a target is assumed to run: an artifact that needs a newer torch fails
/// that target rather than failing on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TargetRuntime {
    /// Oldest torch version the target is assumed to ship (written `"2.11"`).
    pub torch: TorchVersion,
    /// What that assumption is based on, for the report and `deployment.json`.
    pub description: &'static str,
}

impl Target {
    /// Every target, in the order of the BYOM guide.
    pub const ALL: [Target; 4] = [
        Target::X86_64Cpu,
        Target::X86_64Cuda,
        Target::Arm64Cpu,
        Target::JetsonXavier,
    ];

    /// The name used in URLs, file names and the guide.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::X86_64Cpu => "x86_64-cpu",
            Target::X86_64Cuda => "x86_64-cuda",
            Target::Arm64Cpu => "arm64-cpu",
            Target::JetsonXavier => "jetson-xavier",
        }
    }

    /// Jetson Xavier runs fp16 (its Volta GPU has tensor cores for fp16, not for fp32).
    pub fn precision(self) -> Precision {
        match self {
            Target::JetsonXavier => Precision::Fp16,
            _ => Precision::Fp32,
        }
    }

    /// Targets whose artifact runs on an NVIDIA GPU.
    pub fn is_cuda(self) -> bool {
        matches!(self, Target::X86_64Cuda | Target::JetsonXavier)
    }

    /// The runtime assumed on the device; documented in docs/targets.md.
    pub fn runtime(self) -> TargetRuntime {
        match self {
            Target::X86_64Cpu => TargetRuntime {
                torch: byom_core::torch::version::SERVER,
                description: "PyTorch/libtorch 2.11 for x86_64 (the version this compiler links)",
            },
            Target::X86_64Cuda => TargetRuntime {
                torch: TorchVersion(2, 11),
                description: "PyTorch/libtorch 2.11 CUDA build for x86_64",
            },
            Target::Arm64Cpu => TargetRuntime {
                torch: TorchVersion(2, 11),
                description: "PyTorch/libtorch 2.11 for aarch64 (PyPI manylinux aarch64 wheel)",
            },
            Target::JetsonXavier => TargetRuntime {
                torch: TorchVersion(2, 1),
                description:
                    "JetPack 5.1.x (L4T R35, CUDA 11.4) with NVIDIA's PyTorch 2.1.0 wheel; \
                              Xavier gets no JetPack 6",
            },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target {0:?}: expected one of x86_64-cpu, x86_64-cuda, arm64-cpu, jetson-xavier")]
pub struct UnknownTarget(pub String);

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTarget(s.to_string()))
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TargetRuntime {
    /// Whether the target's torch loads an artifact that needs `need` (the core's version
    /// reader's `major.minor[.patch]`; a patch does not change what loads); `None` when `need`
    /// is not a version.
    pub fn ships_at_least(&self, need: &str) -> Option<bool> {
        TorchVersion::parse(need).map(|need| self.torch >= need)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Target::ALL {
            assert_eq!(t.as_str().parse::<Target>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<Target>(&json).unwrap(), t);
        }
        assert!("x86_64".parse::<Target>().is_err());
        assert!(serde_json::from_str::<Target>("\"jetson\"").is_err());
    }

    #[test]
    fn precision_per_target() {
        assert_eq!(Target::JetsonXavier.precision(), Precision::Fp16);
        assert_eq!(Target::Arm64Cpu.precision(), Precision::Fp32);
        assert!(Target::X86_64Cuda.is_cuda() && !Target::Arm64Cpu.is_cuda());
    }

    #[test]
    fn versions_compare_numerically() {
        let jetson = Target::JetsonXavier.runtime();
        assert_eq!(jetson.torch.to_string(), "2.1");
        let x86 = Target::X86_64Cpu.runtime();
        assert_eq!(x86.torch.to_string(), "2.11");
        assert_eq!(x86.ships_at_least("2.9"), Some(true));
        assert_eq!(jetson.ships_at_least("2.11"), Some(false));
        assert_eq!(jetson.ships_at_least("2.1.0"), Some(true));
        assert_eq!(jetson.ships_at_least("1.10"), Some(true));
        assert_eq!(jetson.ships_at_least("x"), None);
        assert_eq!(jetson.ships_at_least("2"), None);
        // Serialized as before: the string "2.11".
        assert_eq!(
            serde_json::to_value(x86).unwrap()["torch"],
            serde_json::json!("2.11")
        );
    }
}
