//! Which implementation an op runs: the engine's fast CPU kernels or the device-generic path.
//!
//! Every op with a custom CPU kernel (the im2col convolution, fused GroupNorm/AdaGN/SiLU, in-place
//! AdamW and EMA updates) also has a generic path made of Candle's own tensor ops, which run on any
//! Candle device (CUDA, Metal, CPU). The op picks the fast kernel when all its tensors are f32 on
//! the CPU, the generic path otherwise — so a CUDA tensor never reaches a CPU-only kernel.
//!
//! The generic path is what a GPU runs, and this machine has none: [`with_generic`] forces it on
//! the CPU for the duration of a closure (this thread only), so tests can check that both paths
//! give the same values and gradients. `CEMIFACE_KERNELS=generic` forces it for a whole process
//! (e.g. to compare a CPU run against a GPU run op for op).

use std::cell::Cell;
use std::sync::OnceLock;

use candle_core::{DType, Tensor};

thread_local! {
    static FORCED: Cell<bool> = const { Cell::new(false) };
}

/// The implementation an op takes for given tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// The engine's own CPU kernels (f32, contiguous slices, gemm/rayon).
    FastCpu,
    /// Candle's composed ops: every device.
    Generic,
}

/// `true` when `CEMIFACE_KERNELS=generic` is set (read once per process).
fn forced_by_env() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    *ENV.get_or_init(|| {
        std::env::var("CEMIFACE_KERNELS")
            .map(|v| v.trim().eq_ignore_ascii_case("generic"))
            .unwrap_or(false)
    })
}

/// Whether the generic path is forced on this thread (by [`with_generic`] or the environment).
pub fn generic_forced() -> bool {
    FORCED.with(Cell::get) || forced_by_env()
}

/// The path for an op over `tensors`: fast only when every one is an f32 CPU tensor and nothing
/// forces the generic path.
pub fn path(tensors: &[&Tensor]) -> KernelPath {
    let fast = !generic_forced()
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
    if fast {
        KernelPath::FastCpu
    } else {
        KernelPath::Generic
    }
}

/// Shorthand for `path(tensors) == KernelPath::FastCpu`.
pub fn fast_cpu(tensors: &[&Tensor]) -> bool {
    path(tensors) == KernelPath::FastCpu
}

/// Runs `f` with every op on this thread taking the generic path (restored afterwards, also when
/// `f` panics). Backward passes follow the path their forward took.
pub fn with_generic<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED.with(|c| c.replace(true)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn f32_cpu_tensors_take_the_fast_path_unless_forced() {
        let dev = Device::Cpu;
        let a = Tensor::zeros(3, DType::F32, &dev).unwrap();
        let d = Tensor::zeros(3, DType::F64, &dev).unwrap();
        if forced_by_env() {
            return; // the whole process runs generic: nothing else to see here
        }
        assert_eq!(path(&[&a]), KernelPath::FastCpu);
        assert_eq!(
            path(&[&a, &d]),
            KernelPath::Generic,
            "an f64 operand goes generic"
        );
        let inner = with_generic(|| (path(&[&a]), with_generic(|| path(&[&a]))));
        assert_eq!(inner, (KernelPath::Generic, KernelPath::Generic));
        assert_eq!(path(&[&a]), KernelPath::FastCpu, "restored after the closure");
        let caught = std::panic::catch_unwind(|| with_generic(|| panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(path(&[&a]), KernelPath::FastCpu, "restored after a panic");
    }
}
