// Load this byom bundle's model.pt with libtorch and self-test it.
//
// Build (libtorch from the PyTorch wheel or the libtorch zip):
//   g++ -std=c++17 load.cpp -o load -I$TORCH/include -I$TORCH/include/torch/csrc/api/include \
//       -L$TORCH/lib -Wl,-rpath,$TORCH/lib -ltorch -ltorch_cpu -lc10
//   ./load model.pt 1,3,224,224 [cuda] [onednn_fusion|optimize_for_inference|to_device_and_freeze] [fp16]
// Take the shape, the device and the load-time steps from deployment.json.
//
// Operator libraries (deployment.json runtime.operator_libraries, e.g. torchvision for
// torchvision::nms) must be registered before torch::jit::load: link a CMake-built
// libtorchvision (-Wl,--no-as-needed -ltorchvision), or list libraries in BYOM_PRELOAD,
// colon-separated, loaded in that order with RTLD_GLOBAL. With the torchvision wheel's _C.so
// (which links libtorch_python, hence libpython; no interpreter is started):
//   export BYOM_PRELOAD=$PY/lib/libpython3.11.so.1.0:$TORCH/lib/libtorch_python.so:$SITE/torchvision/_C.so
//   ./load model.pt 1,3,320,320
#include <torch/csrc/jit/codegen/onednn/interface.h>
#include <torch/script.h>

#include <dlfcn.h>

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: load model.pt B,C,H,W [cpu|cuda] [load-time step] [fp16]\n";
    return 2;
  }
  std::vector<int64_t> shape;
  std::stringstream dims(argv[2]);
  for (std::string d; std::getline(dims, d, ',');) shape.push_back(std::stoll(d));
  torch::Device device(argc > 3 ? argv[3] : "cpu");
  std::string step = argc > 4 ? argv[4] : "";
  bool half = argc > 5 && std::string(argv[5]) == "fp16";

  if (const char* preload = std::getenv("BYOM_PRELOAD")) {
    std::stringstream libs(preload);
    for (std::string lib; std::getline(libs, lib, ':');) {
      if (!lib.empty() && dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
        std::cerr << "BYOM_PRELOAD: " << dlerror() << "\n";
        return 2;
      }
    }
  }
  torch::NoGradGuard no_grad;
  torch::jit::Module module;
  try {
    module = torch::jit::load(argv[1], device);
  } catch (const std::exception& e) {
    // Say what to do first: an operator library missing is the usual cause (libtorch's own
    // message, "Unknown builtin op: torchvision::nms", follows).
    std::cerr << "cannot load " << argv[1]
              << ": if deployment.json lists runtime.operator_libraries, link them or list them in "
                 "BYOM_PRELOAD (see the top of load.cpp)\n"
              << e.what() << "\n";
    return 1;
  }
  module.eval();
  if (step == "onednn_fusion") {
    // Process-wide: every TorchScript forward from now on may use oneDNN Graph partitions.
    torch::jit::RegisterLlgaFuseGraph::setEnabled(true);
  } else if (step == "optimize_for_inference") {
    module = torch::jit::optimize_for_inference(module);
  } else if (step == "to_device_and_freeze") {
    module.to(device);
    if (half) module.to(torch::kHalf);
    module = torch::jit::freeze(module);
  } else if (!step.empty()) {
    std::cerr << "unknown load-time step " << step << "\n";
    return 2;
  }
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  auto x = torch::linspace(-1.0, 1.0, numel).reshape(shape);
  if (half) x = x.to(torch::kHalf);
  auto out = module.forward({x.to(device)});
  if (out.isTensor()) {
    std::cout << "output " << out.toTensor().sizes() << "\n";
  } else {
    std::cout << "output is a " << out.tagKind() << "\n";
  }
  return 0;
}
