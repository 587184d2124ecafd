//! Step 4: which passes each target gets, and why. Written down once so the report, the
//! deployment manifest and the code agree.

use serde::{Deserialize, Serialize};

use crate::report::Pass;
use crate::shim::BenchStep;
use crate::target::{Precision, Target};

/// A step the loader must run on the device after `torch.jit.load`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadStep {
    pub name: String,
    /// The Python line(s) that perform it, with the loaded module in `module`.
    pub python: String,
    /// The C++ equivalent, with the loaded `torch::jit::Module module`.
    pub cpp: String,
    pub why: String,
}

/// How to produce and check one target's artifact.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Artifacts with equal keys are produced once and shared (byte-identical).
    pub artifact_key: &'static str,
    /// Device the artifact is transformed on ("cpu" or "cuda").
    pub device: &'static str,
    pub half: bool,
    /// Cast a 16-bit model's weights to fp32 (CPU targets: see [`for_model`]).
    pub cast_to_fp32: bool,
    pub freeze: bool,
    pub passes: Vec<Pass>,
    pub load_time_steps: Vec<LoadStep>,
    /// Steps that may speed the artifact up at load time on this target. Each is measured on
    /// the artifact in the same run; the fastest that beats the artifact as saved, with the same
    /// outputs, becomes the one load-time step (none when none helps).
    pub load_time_candidates: Vec<(BenchStep, LoadStep)>,
}

fn freeze_pass(device: &str) -> Pass {
    Pass {
        name: "torch::jit::freeze".into(),
        why: format!(
            "inlines parameters and attributes as constants (on {device}) and runs the frozen-graph \
             optimisations: conv/batch-norm folding, conv/add/mul folding, linear folding, dropout \
             removal; the result saves and reloads, and runs faster than the eager module"
        ),
    }
}

fn eval_pass() -> Pass {
    Pass {
        name: "eval mode".into(),
        why: "batch-norm uses running statistics and dropout is off, as at inference".into(),
    }
}

fn half_pass() -> Pass {
    Pass {
        name: "fp16 weights".into(),
        why: "Jetson Xavier's Volta GPU has fp16 tensor cores; fp16 halves memory and bandwidth"
            .into(),
    }
}

/// x86 CPUs: both run at load time because neither result can be saved.
fn cpu_load_time_candidates() -> Vec<(BenchStep, LoadStep)> {
    vec![
        (
            BenchStep::OnednnFusion,
            LoadStep {
                name: "onednn_fusion".into(),
                python: "torch.jit.enable_onednn_fusion(True)".into(),
                cpp: "torch::jit::RegisterLlgaFuseGraph::setEnabled(true);  \
                      // #include <torch/csrc/jit/codegen/onednn/interface.h>"
                    .into(),
                why: "switches on PyTorch's oneDNN Graph (LLGA) fuser, which fuses the frozen \
                      graph's convolution / batch-norm / ReLU / add chains into oneDNN partitions \
                      on x86 CPUs; it is a process-wide runtime setting (nothing in the artifact \
                      changes), so it runs at load time, before the first forward; the first two \
                      forwards profile and fuse and are slower; its effect is measured in \
                      verification.latency_after_load_time_steps"
                    .into(),
            },
        ),
        (
            BenchStep::OptimizeForInference,
            LoadStep {
                name: "optimize_for_inference".into(),
                python: "module = torch.jit.optimize_for_inference(module)".into(),
                cpp: "module = torch::jit::optimize_for_inference(module);".into(),
                why: "converts convolutions to MKLDNN (oneDNN) layouts and fuses ops for x86 \
                      CPUs; its output cannot be saved and reloaded (pytorch#69608), so it runs \
                      at load time; its effect is measured in \
                      verification.latency_after_load_time_steps"
                    .into(),
            },
        ),
    ]
}

/// Loading on the GPU then freezing there: frozen constants do not move with `.to()`.
fn device_freeze_step(half: bool) -> LoadStep {
    let to = if half {
        "module = module.to('cuda').half()"
    } else {
        "module = module.to('cuda')"
    };
    let cpp_to = if half {
        "module.to(torch::kCUDA); module.to(torch::kHalf);"
    } else {
        "module.to(torch::kCUDA);"
    };
    LoadStep {
        name: "to_device_and_freeze".into(),
        python: format!("{to}\nmodule = torch.jit.freeze(module.eval())"),
        cpp: format!("{cpp_to}\nmodule.eval();\nmodule = torch::jit::freeze(module);"),
        why:
            "no GPU on the compiling host: constants frozen on the CPU do not move with .to(), so \
              the module ships unfrozen and is frozen on the device; load it with \
              torch.jit.load(path, map_location='cuda'), which moves every tensor including \
              graph constants, before this step"
                .into(),
    }
}

/// The plan for `target`, given whether this host has a CUDA GPU.
pub fn plan(target: Target, gpu: bool) -> Plan {
    match target {
        Target::X86_64Cpu => Plan {
            artifact_key: "cpu-frozen-fp32",
            device: "cpu",
            half: false,
            cast_to_fp32: false,
            freeze: true,
            passes: vec![eval_pass(), freeze_pass("cpu")],
            load_time_steps: Vec::new(),
            load_time_candidates: cpu_load_time_candidates(),
        },
        // x86_64-cpu's frozen fp32 artifact (one build serves both: same artifact_key), without
        // its load-time candidates: they are oneDNN steps an arm64 libtorch cannot run.
        Target::Arm64Cpu => Plan {
            load_time_candidates: Vec::new(),
            ..plan(Target::X86_64Cpu, gpu)
        },
        Target::X86_64Cuda if gpu => Plan {
            artifact_key: "cuda-frozen-fp32",
            device: "cuda",
            half: false,
            cast_to_fp32: false,
            freeze: true,
            passes: vec![eval_pass(), freeze_pass("cuda")],
            load_time_steps: Vec::new(),
            load_time_candidates: Vec::new(),
        },
        Target::X86_64Cuda => Plan {
            artifact_key: "eager-fp32",
            device: "cpu",
            half: false,
            cast_to_fp32: false,
            freeze: false,
            passes: vec![eval_pass()],
            load_time_steps: vec![device_freeze_step(false)],
            load_time_candidates: Vec::new(),
        },
        Target::JetsonXavier if gpu => Plan {
            artifact_key: "cuda-frozen-fp16",
            device: "cuda",
            half: true,
            cast_to_fp32: false,
            freeze: true,
            passes: vec![eval_pass(), half_pass(), freeze_pass("cuda")],
            load_time_steps: Vec::new(),
            load_time_candidates: Vec::new(),
        },
        Target::JetsonXavier => Plan {
            artifact_key: "eager-fp16",
            device: "cpu",
            half: true,
            cast_to_fp32: false,
            freeze: false,
            passes: vec![eval_pass(), half_pass()],
            load_time_steps: vec![device_freeze_step(true)],
            load_time_candidates: Vec::new(),
        },
    }
}

/// The plan for `target` and a model whose weights are in `model` precision.
///
/// CPU targets get fp32 weights whatever the model stores: libtorch's CPU kernels run fp16 and
/// bf16 many times slower than fp32 (11-30x for ResNet-18 and SqueezeNet, docs/bench-compile.md), and fp32
/// evaluates the 16-bit weights more exactly than 16-bit arithmetic does. The report and
/// `deployment.json` say so, and the input the artifact takes is then float32.
pub fn for_model(target: Target, gpu: bool, model: Precision) -> Plan {
    let mut p = plan(target, gpu);
    if !target.is_cuda() && model.is_half() {
        p.cast_to_fp32 = true;
        // Cast before freezing: the pass list is in order.
        p.passes.insert(
            1,
            Pass {
                name: "fp32 weights".into(),
                why: format!(
                    "the model stores {} weights, which this target's CPU runs 10-30x slower \
                     than fp32 in libtorch (docs/bench-compile.md); cast to fp32, which computes \
                     the same weights more exactly; the artifact takes a float32 input",
                    model.as_str()
                ),
            },
        );
    }
    p
}

/// The precision of what `plan` deploys for a model whose weights are in `model` precision.
pub fn deployed_precision(plan: &Plan, model: Precision) -> Precision {
    if plan.half {
        Precision::Fp16
    } else if plan.cast_to_fp32 {
        Precision::Fp32
    } else {
        model
    }
}

/// Op-name fragments that exist only in x86 builds of libtorch (oneDNN/MKLDNN layouts,
/// FBGEMM quantised kernels, Intel extension ops): an arm64 runtime cannot run them.
pub const X86_ONLY_OPS: &[&str] = &[
    "mkldnn",
    "onednn",
    "fbgemm",
    "ipex::",
    "_convolution_pointwise",
];

/// The x86-only op fragments that appear in a graph dump.
pub fn x86_only_ops(graph: &str) -> Vec<&'static str> {
    let lower = graph.to_ascii_lowercase();
    X86_ONLY_OPS
        .iter()
        .copied()
        .filter(|op| lower.contains(op))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_targets_share_one_artifact_and_differ_in_load_steps() {
        let (x86, arm) = (
            plan(Target::X86_64Cpu, false),
            plan(Target::Arm64Cpu, false),
        );
        assert_eq!(x86.artifact_key, arm.artifact_key);
        // x86 gets its load-time step only once one measured faster; arm64 never (mkldnn).
        assert!(x86.load_time_steps.is_empty() && x86.load_time_candidates.len() == 2);
        assert!(arm.load_time_steps.is_empty() && arm.load_time_candidates.is_empty());
    }

    #[test]
    fn gpu_targets_freeze_on_device_only_with_a_gpu() {
        assert!(plan(Target::X86_64Cuda, true).freeze);
        let no_gpu = plan(Target::X86_64Cuda, false);
        assert!(!no_gpu.freeze && no_gpu.load_time_steps[0].python.contains("freeze"));
        assert!(plan(Target::JetsonXavier, false).half);
        assert_ne!(
            plan(Target::JetsonXavier, true).artifact_key,
            plan(Target::X86_64Cuda, true).artifact_key
        );
    }

    #[test]
    fn half_models_get_fp32_weights_on_cpu_targets_only() {
        for t in [Target::X86_64Cpu, Target::Arm64Cpu] {
            let p = for_model(t, false, Precision::Fp16);
            assert!(p.cast_to_fp32 && !p.half);
            assert_eq!(p.passes[1].name, "fp32 weights");
            assert_eq!(deployed_precision(&p, Precision::Fp16), Precision::Fp32);
            assert!(!for_model(t, false, Precision::Fp32).cast_to_fp32);
        }
        let cuda = for_model(Target::X86_64Cuda, true, Precision::Fp16);
        assert!(!cuda.cast_to_fp32);
        assert_eq!(deployed_precision(&cuda, Precision::Fp16), Precision::Fp16);
        let jetson = for_model(Target::JetsonXavier, false, Precision::Fp32);
        assert_eq!(
            deployed_precision(&jetson, Precision::Fp32),
            Precision::Fp16
        );
    }

    #[test]
    fn finds_x86_only_ops() {
        assert_eq!(x86_only_ops("%3 = prim::MKLDNNGroup(...)"), vec!["mkldnn"]);
        assert!(x86_only_ops("%y = aten::conv2d(%x, %w)").is_empty());
    }
}
