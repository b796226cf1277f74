//! CPU tensors filled from Rust slices without starting an OpenMP team on the calling thread.
//!
//! tch's `Tensor::from_slice` allocates with `torch::zeros` and then copies; the zero fill is
//! one of libtorch's parallel loops, so on any thread but a device's owner it starts a second
//! OpenMP team in the process, whose worker lives as long as that thread. With more OpenMP
//! threads than cores, libgomp "throttles" every team: a worker waiting between two parallel
//! regions spins about 1,000 times instead of 300,000 before it sleeps, so the device
//! thread's forward pass, hundreds of short parallel regions, pays a futex wake-up at each.
//! That was the DEXTR3D forward's 1.2x against PyTorch's in the server (issue 19,
//! `docs/inference.md`). `at::empty` plus a copy does no parallel work at all, so the engines
//! make every request's input tensor with [`f32_tensor`], on whichever thread prepares it.

// Writing into the tensor's own buffer: see the one `unsafe` block.
#![allow(unsafe_code)]

use tch::{Device, Kind, Tensor};

use crate::error::{JitError, Result};

/// A contiguous `f32` CPU tensor of `shape` holding `data` (C order), made without any
/// parallel region (see the module's documentation).
pub fn f32_tensor(data: &[f32], shape: &[i64]) -> Result<Tensor> {
    let count = shape
        .iter()
        .try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) });
    if count.and_then(|n| usize::try_from(n).ok()) != Some(data.len()) {
        return Err(JitError::Shape(format!(
            "{} values cannot fill a tensor of shape {shape:?}",
            data.len()
        )));
    }
    f32_tensor_with(shape, |buf| buf.copy_from_slice(data))
}

/// A contiguous `f32` CPU tensor of `shape` whose values `fill` writes (C order) straight into
/// the tensor's buffer, zeroed first: for inputs computed on the way (an axis swap, a cast)
/// the tensor is then the only copy made. No parallel region, as [`f32_tensor`].
pub fn f32_tensor_with(shape: &[i64], fill: impl FnOnce(&mut [f32])) -> Result<Tensor> {
    let t = Tensor::f_empty(shape, (Kind::Float, Device::Cpu)).map_err(|e| JitError::Shape(e.to_string()))?;
    let n = t.numel();
    if n == 0 {
        fill(&mut []);
        return Ok(t);
    }
    let ptr = t.data_ptr().cast::<f32>();
    // `t` is a fresh, contiguous f32 CPU tensor of `n` elements that nothing else refers to
    // yet: its buffer holds `n` f32s, zeroed here (a single-threaded memset) so the slice
    // handed to `fill` is initialised, and it lives as long as `t`, past the slice's use.
    let buf = unsafe {
        std::ptr::write_bytes(ptr, 0, n);
        std::slice::from_raw_parts_mut(ptr, n)
    };
    fill(buf);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tensor_holds_the_slice_in_c_order() {
        let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5 - 3.0).collect();
        let t = f32_tensor(&data, &[1, 2, 3, 4]).unwrap();
        assert_eq!(t.size(), [1, 2, 3, 4]);
        assert_eq!(t.kind(), Kind::Float);
        assert!(t.is_contiguous());
        assert!(t.equal(&Tensor::from_slice(&data).view([1, 2, 3, 4])));
        assert_eq!(t.double_value(&[0, 1, 2, 3]), f64::from(data[23]));
    }

    #[test]
    fn a_shape_that_does_not_match_the_data_is_refused() {
        let e = f32_tensor(&[1.0; 6], &[1, 2, 4]).unwrap_err().to_string();
        assert!(
            e.contains("6 values cannot fill a tensor of shape [1, 2, 4]"),
            "{e}"
        );
        assert!(f32_tensor(&[1.0; 6], &[-1, 6]).is_err());
        assert!(f32_tensor(&[], &[0, 3]).unwrap().size() == [0, 3]);
    }

    #[test]
    fn the_fill_writes_into_the_tensor() {
        let t = f32_tensor_with(&[2, 3], |b| {
            assert!(b.iter().all(|&v| v == 0.0));
            b.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
        })
        .unwrap();
        assert!(t.equal(&Tensor::from_slice(&[0f32, 1., 2., 3., 4., 5.]).view([2, 3])));
        assert!(f32_tensor_with(&[-2, 3], |_| ()).is_err());
    }
}
