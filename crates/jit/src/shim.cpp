// The C side of aiaa-jit: what libtorch offers for inference that tch 0.26 does not expose.
//
// tch wraps a TorchScript module as a heap-allocated `torch::jit::script::Module*` (torch-sys'
// `module` handle) but gives Rust no way in or out of that pointer, and has no binding for
// `torch::jit::freeze`, `torch::jit::optimize_for_inference` or `c10::InferenceMode`. This
// file provides them over the same handle type, built against the same libtorch headers and
// ABI as torch-sys' own `torch_api.cpp` (see build.rs), so a module made here is the object
// tch would hold.
//
// Every function catches every C++ exception: one must never unwind into Rust. An error is
// handed back as a malloc'd message in `*err` (freed by `aiaa_jit_free_string`) and a null
// result; success leaves `*err` untouched.

#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

using torch::jit::Module;

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// torch-sys' device numbering (its `device_of_int`): -1 the CPU, n >= 0 CUDA device n. The
// Rust side only sends those two.
at::Device device_of(int device) {
  if (device < 0) {
    return at::Device(at::kCPU);
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device));
}

// c10::Error::what() carries a C++ backtrace after the message; what_without_backtrace() is
// the message alone, which is what a log line and an API error want.
template <typename F>
auto guarded(char** err, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    *err = copy_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
  } catch (...) {
    *err = copy_string("unknown C++ exception");
  }
  return nullptr;
}

// The first tensor of a module's output, depth first through tuples and lists: what the
// engines use of a network's answer (a segmentation network returns one tensor; some return
// (logits, aux...) and the first is the prediction).
bool first_tensor(const c10::IValue& v, at::Tensor* out) {
  if (v.isTensor()) {
    *out = v.toTensor();
    return true;
  }
  if (v.isTuple()) {
    for (const auto& item : v.toTupleRef().elements()) {
      if (first_tensor(item, out)) return true;
    }
    return false;
  }
  if (v.isList()) {
    for (const c10::IValue& item : v.toListRef()) {
      if (first_tensor(item, out)) return true;
    }
    return false;
  }
  return false;
}

}  // namespace

extern "C" {

// Loads a TorchScript file with its tensors on `device`, in evaluation mode (freezing
// requires it, and a served model must not update batch-norm statistics or drop units).
Module* aiaa_jit_load(const char* path, int device, char** err) {
  return guarded(err, [&]() -> Module* {
    auto m = std::make_unique<Module>(torch::jit::load(path, device_of(device)));
    m->eval();
    return m.release();
  });
}

// torch::jit::freeze: parameters and attributes inlined into the graph as constants, then
// the frozen-graph optimisations (conv + batch-norm folding, dropout removal, ...), exactly
// what Python's torch.jit.freeze runs. A new module: `m` itself stays as it was (freezing
// works on a clone), so it remains usable as the fallback.
Module* aiaa_jit_freeze(const Module* m, char** err) {
  return guarded(err, [&]() -> Module* {
    return new Module(torch::jit::freeze(*m, std::nullopt, /*optimize_numerics=*/true));
  });
}

// torch::jit::optimize_for_inference on a frozen module (Python's
// torch.jit.optimize_for_inference after torch.jit.freeze): on the CPU it moves convolutions
// to oneDNN with pre-packed weights, the bulk of the speed-up. It rewrites the graph it is
// given in place, so it works on a clone: when it fails half-way, `frozen` is still whole
// and can serve.
Module* aiaa_jit_optimize(const Module* frozen, char** err) {
  return guarded(err, [&]() -> Module* {
    Module copy = frozen->clone();
    return new Module(torch::jit::optimize_for_inference(copy));
  });
}

// One forward pass under c10::InferenceMode (no autograd bookkeeping at all, cheaper than
// no_grad: no version counters, no views tracked); the answer is the first tensor of the
// output, as a heap tensor tch owns (`Tensor::from_ptr`, freed by tch's at_free).
at::Tensor* aiaa_jit_forward(Module* m, const at::Tensor* input, char** err) {
  return guarded(err, [&]() -> at::Tensor* {
    c10::InferenceMode guard;
    std::vector<c10::IValue> inputs{*input};
    c10::IValue output = m->forward(std::move(inputs));
    at::Tensor out;
    if (!first_tensor(output, &out)) {
      throw std::runtime_error("the module returned no tensor (" + output.tagKind() + ")");
    }
    return new at::Tensor(std::move(out));
  });
}

// The forward method's graph as text (tests check what freezing did to it).
char* aiaa_jit_graph(const Module* m, char** err) {
  return guarded(err, [&]() -> char* {
    return copy_string(m->get_method("forward").graph()->toString());
  });
}

void aiaa_jit_free(Module* m) { delete m; }

void aiaa_jit_free_string(char* s) { std::free(s); }

}  // extern "C"
