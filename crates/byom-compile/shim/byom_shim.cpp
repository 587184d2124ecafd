// The byom libtorch shim; see byom_shim.h for the contract of each function.
#include "byom_shim.h"

#include <torch/script.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/codegen/onednn/interface.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <dlfcn.h>
#include <torch/csrc/jit/runtime/operator.h>

#include <chrono>
#include <cstring>
#include <set>
#include <exception>
#include <optional>
#include <sstream>
#include <string>

namespace {

void set_err(char* err, size_t err_len, const std::string& msg) {
  if (err == nullptr || err_len == 0) return;
  size_t n = msg.size() < err_len - 1 ? msg.size() : err_len - 1;
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

// Picks the output the caller checks: the tensor itself, an element of a tuple/list, a dict value.
at::Tensor select_output(const c10::IValue& out, const std::string& select) {
  if (select.empty()) {
    return out.toTensor();
  }
  if (select[0] == '#') {
    size_t i = std::stoul(select.substr(1));
    if (out.isTuple()) return out.toTupleRef().elements().at(i).toTensor();
    if (out.isList()) return out.toList().get(i).toTensor();
    throw std::runtime_error("output is neither a tuple nor a list");
  }
  if (out.isGenericDict()) {
    for (const auto& kv : out.toGenericDict()) {
      if (kv.key().isString() && kv.key().toStringRef() == select) return kv.value().toTensor();
    }
    throw std::runtime_error("output dict has no key " + select);
  }
  throw std::runtime_error("output is not a dict");
}

// Switches the oneDNN Graph fuser on for one benchmark and restores the previous setting, also
// on an exception: the setting is process-wide and later benchmarks must not inherit it.
class LlgaFusion {
 public:
  LlgaFusion() : was_(torch::jit::RegisterLlgaFuseGraph::setEnabled(true)) {}
  ~LlgaFusion() { torch::jit::RegisterLlgaFuseGraph::setEnabled(was_); }
  LlgaFusion(const LlgaFusion&) = delete;
  LlgaFusion& operator=(const LlgaFusion&) = delete;

 private:
  bool was_;
};

}  // namespace

extern "C" int byom_transform(const char* in_path, const char* out_path, const char* device,
                              int cast, int freeze, char* err, size_t err_len) {
  try {
    if (cast < 0 || cast > 2) throw std::runtime_error("unknown cast");
    c10::InferenceMode guard(false);
    torch::jit::Module m = torch::jit::load(in_path, c10::Device(device));
    m.eval();
    if (cast == 1) m.to(at::kHalf);
    if (cast == 2) m.to(at::kFloat);
    if (freeze != 0) {
      torch::jit::freeze(m).save(out_path);
    } else {
      m.save(out_path);
    }
    return 0;
  } catch (const std::exception& e) {
    set_err(err, err_len, e.what());
    return 1;
  }
}

extern "C" int byom_bench(const char* path, const char* device, int load_step, int half,
                          const int64_t* shape, size_t ndim, const char* select, int warmup,
                          int iters, double* times_ms, float* out, size_t out_cap,
                          size_t* out_len, char* err, size_t err_len) {
  try {
    if (load_step < 0 || load_step > 2) throw std::runtime_error("unknown load-time step");
    torch::NoGradGuard no_grad;
    std::optional<LlgaFusion> fusion;
    if (load_step == 2) fusion.emplace();
    c10::Device dev(device);
    torch::jit::Module m = torch::jit::load(path, dev);
    m.eval();
    if (load_step == 1) {
      torch::jit::Module frozen = torch::jit::freeze(m);
      m = torch::jit::optimize_for_inference(frozen);
    }
    std::vector<int64_t> dims(shape, shape + ndim);
    int64_t numel = 1;
    for (auto d : dims) numel *= d;
    at::Tensor input = torch::linspace(-1.0, 1.0, numel).reshape(dims);
    if (half != 0) input = input.to(at::kHalf);
    input = input.to(dev);
    std::vector<c10::IValue> inputs{input};
    c10::IValue result;
    for (int i = 0; i < warmup; ++i) result = m.forward(inputs);
    for (int i = 0; i < iters; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      result = m.forward(inputs);
      if (dev.is_cuda()) select_output(result, select).cpu();
      auto t1 = std::chrono::steady_clock::now();
      times_ms[i] = std::chrono::duration<double, std::milli>(t1 - t0).count();
    }
    if (iters + warmup == 0) result = m.forward(inputs);
    at::Tensor o = select_output(result, select).detach().to(at::kCPU).to(at::kFloat).contiguous();
    size_t n = static_cast<size_t>(o.numel());
    *out_len = n;
    std::memcpy(out, o.data_ptr<float>(), (n < out_cap ? n : out_cap) * sizeof(float));
    return 0;
  } catch (const std::exception& e) {
    set_err(err, err_len, e.what());
    return 1;
  }
}

extern "C" long byom_graph_text(const char* path, char* buf, size_t cap, char* err,
                                size_t err_len) {
  try {
    torch::jit::Module m = torch::jit::load(path, c10::Device("cpu"));
    std::ostringstream text;
    for (const auto& method : m.get_methods()) {
      auto graph = method.graph()->copy();
      torch::jit::Inline(*graph);
      text << method.name() << ":\n" << graph->toString() << "\n";
    }
    for (const auto& sub : m.named_modules()) {
      for (const auto& method : sub.value.get_methods()) {
        text << sub.name << "." << method.name() << ":\n" << method.graph()->toString() << "\n";
      }
    }
    std::string s = text.str();
    if (buf != nullptr && cap > 0) {
      size_t n = s.size() < cap ? s.size() : cap;
      std::memcpy(buf, s.data(), n);
    }
    return static_cast<long>(s.size());
  } catch (const std::exception& e) {
    set_err(err, err_len, e.what());
    return -1;
  }
}

extern "C" int byom_load_library(const char* path, int global, char* err, size_t err_len) {
  void* handle = dlopen(path, RTLD_NOW | (global != 0 ? RTLD_GLOBAL : RTLD_LOCAL));
  if (handle == nullptr) {
    const char* e = dlerror();
    set_err(err, err_len, e != nullptr ? e : "dlopen failed");
    return 1;
  }
  return 0;
}

extern "C" long byom_operator_namespaces(char* buf, size_t cap) {
  std::set<std::string> names;
  for (const auto& op : torch::jit::getAllOperators()) {
    const std::string& name = op->schema().name();
    names.insert(name.substr(0, name.find("::")));
  }
  std::string text;
  for (const auto& n : names) text += n + "\n";
  size_t n = text.size() < cap ? text.size() : cap;
  if (buf != nullptr && n > 0) std::memcpy(buf, text.data(), n);
  return static_cast<long>(text.size());
}
