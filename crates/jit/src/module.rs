//! [`Module`]: a TorchScript module held through the C++ shim (`src/shim.cpp`), the one
//! place of the platform that calls into libtorch without tch.
//!
//! The handle is the same C++ object tch's `CModule` holds (`torch::jit::script::Module*`,
//! torch-sys' [`CModule_`]); tensors cross as tch's own (`Tensor::as_ptr`, `from_ptr`: a
//! heap `at::Tensor*` either way), so nothing is copied and tch frees what it gets.

// FFI to the shim. Each call is safe for the reasons stated at it; nothing unsafe leaves
// this module.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use std::ptr::NonNull;

use tch::{Device, Tensor};
use torch_sys::{C_tensor, CModule_};

use crate::error::{JitError, Result};

unsafe extern "C" {
    fn aiaa_jit_load(path: *const c_char, device: c_int, err: *mut *mut c_char) -> *mut CModule_;
    fn aiaa_jit_freeze(m: *const CModule_, err: *mut *mut c_char) -> *mut CModule_;
    fn aiaa_jit_optimize(m: *const CModule_, err: *mut *mut c_char) -> *mut CModule_;
    fn aiaa_jit_forward(m: *mut CModule_, input: *const C_tensor, err: *mut *mut c_char) -> *mut C_tensor;
    fn aiaa_jit_graph(m: *const CModule_, err: *mut *mut c_char) -> *mut c_char;
    fn aiaa_jit_free(m: *mut CModule_);
    fn aiaa_jit_free_string(s: *mut c_char);
}

/// A TorchScript module in evaluation mode, owned (freed on drop).
#[derive(Debug)]
pub struct Module {
    raw: NonNull<CModule_>,
    device: Device,
}

// A `torch::jit::Module` is a reference-counted handle to its object; moving it to another
// thread is fine (tch's CModule is Send for the same reason). It is not Sync: the platform
// runs each module on its device's one owner thread.
unsafe impl Send for Module {}

impl Drop for Module {
    fn drop(&mut self) {
        // The pointer came from `new` in the shim and is freed once, here.
        unsafe { aiaa_jit_free(self.raw.as_ptr()) }
    }
}

/// Runs a shim call that reports failure as a null result plus a message in `err`.
fn call<T>(f: impl FnOnce(*mut *mut c_char) -> *mut T) -> std::result::Result<NonNull<T>, String> {
    let mut err: *mut c_char = std::ptr::null_mut();
    let out = f(&mut err);
    match NonNull::new(out) {
        Some(p) if err.is_null() => Ok(p),
        _ => Err(take_string(err).unwrap_or_else(|| "the shim returned nothing and no reason".into())),
    }
}

/// The shim's malloc'd string, copied and freed.
fn take_string(s: *mut c_char) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // The shim hands out NUL-terminated strings it allocated with malloc; we own them.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    unsafe { aiaa_jit_free_string(s) };
    Some(text)
}

/// torch-sys' device numbering: -1 the CPU, n the CUDA device n.
fn device_code(device: Device) -> Result<c_int> {
    match device {
        Device::Cpu => Ok(-1),
        Device::Cuda(n) => c_int::try_from(n).map_err(|_| JitError::Device(format!("{device:?}"))),
        other => Err(JitError::Device(format!("{other:?}"))),
    }
}

impl Module {
    /// Loads a TorchScript file with its tensors on `device`, in evaluation mode.
    pub fn load(path: &Path, device: Device) -> Result<Module> {
        let shown = path.display().to_string();
        let load_error = |reason: String| JitError::Load {
            path: shown.clone(),
            reason,
        };
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| load_error("the path holds a NUL byte".into()))?;
        let code = device_code(device)?;
        // `c_path` outlives the call; the shim copies what it needs.
        let raw = call(|err| unsafe { aiaa_jit_load(c_path.as_ptr(), code, err) }).map_err(load_error)?;
        Ok(Module { raw, device })
    }

    /// The device its tensors are on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// `torch::jit::freeze`: a new, frozen module; `self` is unchanged.
    pub fn freeze(&self) -> Result<Module> {
        // `self.raw` is a live module for the duration of the call.
        let raw = call(|err| unsafe { aiaa_jit_freeze(self.raw.as_ptr(), err) }).map_err(JitError::Freeze)?;
        Ok(Module {
            raw,
            device: self.device,
        })
    }

    /// `torch::jit::optimize_for_inference` of a frozen module, on a copy: `self` is
    /// unchanged.
    pub fn optimize_for_inference(&self) -> Result<Module> {
        // As in `freeze`.
        let raw =
            call(|err| unsafe { aiaa_jit_optimize(self.raw.as_ptr(), err) }).map_err(JitError::Optimize)?;
        Ok(Module {
            raw,
            device: self.device,
        })
    }

    /// One forward pass under inference mode on `input` (on the module's device); the
    /// first tensor of the module's output.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        // `input` stays alive for the call; the shim reads it (a shallow copy) and returns a
        // tensor it allocated with `new`, which tch's Tensor owns and frees from now on.
        let out = call(|err| unsafe { aiaa_jit_forward(self.raw.as_ptr(), input.as_ptr(), err) })
            .map_err(JitError::Forward)?;
        Ok(unsafe { Tensor::from_ptr(out.as_ptr()) })
    }

    /// The forward method's graph, as libtorch prints it.
    pub fn graph(&self) -> Result<String> {
        // As in `freeze`; the string is the shim's, taken over by `take_string`.
        let text = call(|err| unsafe { aiaa_jit_graph(self.raw.as_ptr(), err) }).map_err(JitError::Graph)?;
        Ok(take_string(text.as_ptr()).unwrap_or_default())
    }
}
