// C ABI of the byom libtorch shim: the TorchScript passes tch does not expose.
// Everything is file-path based on purpose: no module pointer is shared with tch, so the two
// C++ wrappers never have to agree on object layouts, only on the libtorch they both link.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Load `in_path` on `device` ("cpu", "cuda", "cuda:0"), set eval mode, cast floating
// parameters and buffers by `cast` (0 keep, 1 fp16, 2 fp32), run torch::jit::freeze when `freeze` != 0 (which also
// applies the frozen graph optimisations: conv/batch-norm folding, conv/add/mul folding,
// dropout removal, linear folding), and save to `out_path`. Returns 0 on success, else writes
// a message into `err`.
int byom_transform(const char* in_path, const char* out_path, const char* device, int cast,
                   int freeze, char* err, size_t err_len);

// Load-time steps `byom_bench` can apply (x86_64-cpu's candidates), by number:
//   0 none;
//   1 freeze + optimize_for_inference (oneDNN layouts; its result cannot be saved: pytorch#69608);
//   2 the oneDNN Graph (LLGA) fuser: a process-wide TorchScript setting, switched on for this
//     call only and restored before it returns.
// Load `path` on `device`, apply `load_step`, run `warmup` untimed and `iters` timed forwards on
// the fixed input linspace(-1, 1, numel).reshape(shape) (fp16 when `half`), store each time in
// `times_ms`, and copy the selected output (`select`: "" a tensor, "#i" element i of a
// tuple/list, else a dict key) as float32 into `out` (at most `out_cap` values; the full count
// goes to `out_len`).
int byom_bench(const char* path, const char* device, int load_step, int half,
               const int64_t* shape, size_t ndim, const char* select, int warmup, int iters,
               double* times_ms, float* out, size_t out_cap, size_t* out_len, char* err,
               size_t err_len);

// Write the text of every method graph of the module at `path` (after inlining) into `buf`
// (truncated to `cap`); used to look for x86-only (mkldnn) ops. Returns the full length or -1.
long byom_graph_text(const char* path, char* buf, size_t cap, char* err, size_t err_len);

// dlopen `path` with RTLD_NOW, and RTLD_GLOBAL when `global` != 0 (an operator library and
// what it needs: see src/ops.rs). The handle is never closed: the operators it registered stay
// for the life of the process. Returns 0 on success, else writes dlerror() into `err`.
int byom_load_library(const char* path, int global, char* err, size_t err_len);

// Write the namespaces of every operator registered in this process (torch::jit::
// getAllOperators(), `aten` of `aten::conv2d`), sorted, one per line, into `buf` (truncated to
// `cap`). Returns the full length.
long byom_operator_namespaces(char* buf, size_t cap);

#ifdef __cplusplus
}
#endif
