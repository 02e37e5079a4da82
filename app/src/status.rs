//! System status: what the server reports at `GET /healthz` and on the status page.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The server's state as the outside world sees it. Serialised as the `/healthz` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// Always `"ok"` while the server answers.
    pub status: String,
    /// Version of the workspace (`cemiface --version`).
    pub version: String,
    /// Compute device in use: `cpu` or `cuda:N`.
    pub device: String,
    /// Whether this binary was built with the `cuda` feature.
    pub cuda_compiled: bool,
    /// The GPU when `device` is `cuda:N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuStatus>,
    /// CPU threads used by the tensor kernels.
    pub cpu_threads: usize,
    /// Folder the pinned model assets are read from.
    pub assets_dir: String,
    /// Asset groups of `assets.lock`, by name.
    pub assets: BTreeMap<String, AssetGroup>,
    /// The demo's generator: where it was loaded from and what it is; None when there is none.
    #[serde(default)]
    pub generator: Option<String>,
    /// Why there is no generator (when `generator` is None).
    #[serde(default)]
    pub generator_problem: Option<String>,
    /// Whether the admin panel can be used (a password hash is set and the job store is open).
    #[serde(default)]
    pub admin_enabled: bool,
}

/// The GPU the server computes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuStatus {
    /// As the driver names it, e.g. `NVIDIA H200`.
    pub name: String,
    pub memory_total_mib: u64,
    pub memory_free_mib: u64,
    /// e.g. `9.0`.
    pub compute_capability: String,
}

impl std::fmt::Display for GpuStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:.1} GiB, {:.1} GiB free, compute capability {})",
            self.name,
            self.memory_total_mib as f64 / 1024.0,
            self.memory_free_mib as f64 / 1024.0,
            self.compute_capability
        )
    }
}

/// One asset group (e.g. `dlib-resnet`: weights + manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetGroup {
    /// Every file present with its pinned sha256.
    pub present: bool,
    /// Package it is fetched from.
    pub source: String,
    /// Each file's state: `ok`, `missing` or `corrupt`.
    pub files: BTreeMap<String, String>,
}

/// A status check in flight.
#[cfg(feature = "ssr")]
pub type StatusFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<SystemStatus, String>> + Send>>;

/// How the server produces a fresh status (the server provides it as Leptos context; the app
/// itself holds no model or file-system code).
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct StatusSource(pub std::sync::Arc<dyn Fn() -> StatusFuture + Send + Sync>);

/// Re-checks the assets on the server and returns the status.
#[server(endpoint = "system_status")]
pub async fn get_system_status() -> Result<SystemStatus, ServerFnError> {
    let source = use_context::<StatusSource>()
        .ok_or_else(|| ServerFnError::new("the server provides no status source"))?;
    (source.0)().await.map_err(ServerFnError::new)
}
