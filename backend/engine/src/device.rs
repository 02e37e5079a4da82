//! Choice of the compute device: the CPU everywhere, CUDA where the binary was built with `cuda`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::{Error, Result};

/// What the user asked for (`--device`): `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// The first CUDA GPU when this build has CUDA and one is visible, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

/// As written on a command line (`auto`, `cpu`, `cuda:N`); parses back with `FromStr`.
impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Self::Cuda(i)),
                _ => Err(Error::Device(format!(
                    "unknown device `{s}`: use auto, cpu, cuda or cuda:N"
                ))),
            },
        }
    }
}

/// `true` when this binary was compiled with the `cuda` feature.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// A resolved device with a stable label for logs, APIs and run configs (`cpu`, `cuda:0`).
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub device: Device,
    pub label: String,
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl ComputeDevice {
    /// Resolves a request; asking for CUDA on a CPU-only build is an error that says how to fix it.
    pub fn select(request: DeviceRequest) -> Result<Self> {
        match request {
            DeviceRequest::Cpu => Ok(Self::cpu()),
            DeviceRequest::Cuda(i) => Self::cuda(i),
            DeviceRequest::Auto if CUDA_COMPILED => Self::cuda(0).or_else(|e| {
                tracing::warn!("no usable CUDA device ({e}); falling back to the CPU");
                Ok(Self::cpu())
            }),
            DeviceRequest::Auto => Ok(Self::cpu()),
        }
    }

    /// The CPU.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            label: "cpu".into(),
        }
    }

    fn cuda(ordinal: usize) -> Result<Self> {
        if !CUDA_COMPILED {
            return Err(Error::Device(format!(
                "cuda:{ordinal} requested, but this binary was built without CUDA; \
                 rebuild with `--features cuda` (needs nvcc) or use --device cpu"
            )));
        }
        let device = Device::new_cuda(ordinal).map_err(|e| Error::Device(format!("cuda:{ordinal}: {e}")))?;
        if tf32_from_env() {
            set_tf32(true);
            tracing::info!("CEMIFACE_TF32=1: f32 matrix products on cuda:{ordinal} use TF32 tensor cores");
        }
        Ok(Self {
            device,
            label: format!("cuda:{ordinal}"),
        })
    }

    /// The GPU behind a CUDA device (name, memory, compute capability); None on the CPU.
    pub fn gpu_info(&self) -> Option<GpuInfo> {
        gpu_info(&self.device)
    }

    /// Number of CPU threads the tensor kernels use (Candle's rayon pool: `RAYON_NUM_THREADS`).
    pub fn cpu_threads() -> usize {
        candle_core::utils::get_num_threads()
    }
}

/// `true` when `CEMIFACE_TF32=1` (or `true`) is set.
fn tf32_from_env() -> bool {
    std::env::var("CEMIFACE_TF32")
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// Lets cuBLAS run f32 matrix products (and so the convolutions, which are im2col + GEMM) on TF32
/// tensor cores: 10-bit mantissa inputs, f32 accumulation; several times the f32 throughput on
/// Ampere and newer. Off by default (`CEMIFACE_TF32=1` turns it on for a process). No effect on the
/// CPU or in a build without `cuda`.
pub fn set_tf32(on: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(on);
}

/// Runs `f` with TF32 matrix products on, then restores the previous setting.
pub fn with_tf32<R>(f: impl FnOnce() -> R) -> R {
    let was = tf32();
    set_tf32(true);
    let r = f();
    set_tf32(was);
    r
}

/// Whether TF32 matrix products are on (see [`set_tf32`]); always `false` without `cuda`.
pub fn tf32() -> bool {
    CUDA_COMPILED && candle_core::cuda::gemm_reduced_precision_f32()
}

/// A CUDA GPU as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuInfo {
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// `major.minor`, e.g. `9.0` for H100/H200.
    pub compute_capability: String,
}

/// GPU memory in use on the device's GPU (all processes), in bytes, after waiting for the queued
/// work; `None` on the CPU.
pub fn gpu_memory_used(device: &Device) -> Option<u64> {
    device.synchronize().ok()?;
    gpu_info(device).map(|g| g.memory_total_bytes - g.memory_free_bytes)
}

/// A CUDA error that the driver library recorded instead of returning (e.g. a failed free when a
/// tensor was dropped), cleared by reading it; `None` when there is none or on the CPU.
#[cfg(feature = "cuda")]
pub fn gpu_deferred_error(device: &Device) -> Option<String> {
    let Device::Cuda(d) = device else { return None };
    d.cuda_stream()
        .context()
        .check_err()
        .err()
        .map(|e| format!("{e:?}"))
}

/// Always `None` without `cuda`.
#[cfg(not(feature = "cuda"))]
pub fn gpu_deferred_error(_: &Device) -> Option<String> {
    None
}

#[cfg(feature = "cuda")]
fn gpu_info(device: &Device) -> Option<GpuInfo> {
    let Device::Cuda(d) = device else { return None };
    let stream = d.cuda_stream();
    let ctx = stream.context();
    let (free, total) = ctx.mem_get_info().ok()?;
    let (major, minor) = ctx.compute_capability().ok()?;
    Some(GpuInfo {
        name: ctx.name().ok()?,
        memory_total_bytes: total as u64,
        memory_free_bytes: free as u64,
        compute_capability: format!("{major}.{minor}"),
    })
}

#[cfg(not(feature = "cuda"))]
fn gpu_info(_device: &Device) -> Option<GpuInfo> {
    None
}

/// The processor the CPU kernels run on, for benchmark tables: its model name and the widest SIMD
/// level the matrix kernels (`gemm`, built with its AVX-512 `x86-v4` kernels) dispatch to on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// `model name` from /proc/cpuinfo (the architecture where there is none).
    pub model: String,
    /// `AVX-512`, `AVX2+FMA`, `SSE4.1`, `NEON` or `scalar`.
    pub simd: &'static str,
}

impl CpuInfo {
    pub fn detect() -> Self {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        Self {
            model,
            simd: simd_level(),
        }
    }
}

impl fmt::Display for CpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.model, self.simd)
    }
}

#[cfg(target_arch = "x86_64")]
fn simd_level() -> &'static str {
    if std::arch::is_x86_feature_detected!("avx512f") {
        "AVX-512"
    } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        "AVX2+FMA"
    } else if std::arch::is_x86_feature_detected!("sse4.1") {
        "SSE4.1"
    } else {
        "scalar"
    }
}

#[cfg(target_arch = "aarch64")]
fn simd_level() -> &'static str {
    "NEON"
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_level() -> &'static str {
    "scalar"
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn the_cpu_is_named_with_its_simd_level() {
        let c = CpuInfo::detect();
        assert!(!c.model.is_empty());
        assert!(["AVX-512", "AVX2+FMA", "SSE4.1", "NEON", "scalar"].contains(&c.simd));
        assert_eq!(c.to_string(), format!("{} ({})", c.model, c.simd));
    }

    #[test]
    fn requests_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("auto".parse::<DeviceRequest>().unwrap(), DeviceRequest::Auto);
        assert_eq!("CPU".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!("cuda".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(3));
        let err = "tpu".parse::<DeviceRequest>().unwrap_err().to_string();
        assert!(err.contains("auto, cpu, cuda or cuda:N"), "{err}");
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn cpu_device_computes() {
        let dev = ComputeDevice::select(DeviceRequest::Cpu).unwrap();
        assert_eq!(dev.to_string(), "cpu");
        assert_eq!(dev.gpu_info(), None);
        let a = Tensor::new(&[[1f32, 2.], [3., 4.]], &dev.device).unwrap();
        let b = a.matmul(&a.t().unwrap()).unwrap();
        assert_eq!(b.to_vec2::<f32>().unwrap(), vec![vec![5., 11.], vec![11., 25.]]);
        assert!(ComputeDevice::cpu_threads() >= 1);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_on_a_cpu_build_is_a_clear_error_and_auto_is_cpu() {
        let err = ComputeDevice::select(DeviceRequest::Cuda(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--features cuda"), "{err}");
        assert_eq!(ComputeDevice::select(DeviceRequest::Auto).unwrap().label, "cpu");
    }
}
