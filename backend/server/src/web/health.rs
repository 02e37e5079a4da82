//! `GET /healthz`: version, compute device and which model assets are installed.

use axum::extract::State;
use axum::Json;
use cemiface_app::status::{AssetGroup, GpuStatus, SystemStatus};
use cemiface_engine::device::{ComputeDevice, CUDA_COMPILED};

use crate::web::error::AppError;
use crate::web::state::AppState;

/// Builds the status, checking the assets on a blocking thread (hashing is file I/O).
pub async fn system_status(state: AppState) -> anyhow::Result<SystemStatus> {
    let inner = state.inner.clone();
    let groups = tokio::task::spawn_blocking(move || {
        let mut verifier = inner.verifier.lock().unwrap_or_else(|p| p.into_inner());
        verifier.check(&inner.assets_dir, &inner.assets)
    })
    .await??;
    let assets = groups
        .into_iter()
        .map(|(name, g)| {
            let files = g
                .files
                .into_iter()
                .map(|(f, s)| (f, s.as_str().to_owned()))
                .collect();
            (
                name,
                AssetGroup {
                    present: g.present,
                    source: g.source,
                    files,
                },
            )
        })
        .collect();
    Ok(SystemStatus {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        device: state.inner.device.label.clone(),
        cuda_compiled: CUDA_COMPILED,
        gpu: state.inner.device.gpu_info().map(|g| GpuStatus {
            name: g.name,
            memory_total_mib: g.memory_total_bytes / (1 << 20),
            memory_free_mib: g.memory_free_bytes / (1 << 20),
            compute_capability: g.compute_capability,
        }),
        cpu_threads: ComputeDevice::cpu_threads(),
        assets_dir: state.inner.assets_dir.display().to_string(),
        assets,
        generator: state.demo.model().ok().map(|m| {
            let i = &m.info;
            format!(
                "{} ({} training steps, {}×{} px, E_id {})",
                i.checkpoint, i.step, i.image_size, i.image_size, i.encoder
            )
        }),
        generator_problem: state.demo.model().err(),
        admin_enabled: state.jobs.as_ref().is_some_and(|j| j.admin_hash.is_some()),
    })
}

/// The handler.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<SystemStatus>, AppError> {
    Ok(Json(system_status(state).await?))
}
