//! The live demo: upload a face (`POST /api/demo/upload`), then sample it at a similarity target m
//! over one websocket per page (`GET /api/demo/ws`) that streams each DDIM step's x̂0.

pub mod client;
pub mod job;
pub mod model;
pub mod png_text;
pub mod queue;
pub mod upload;
pub mod uploads;
pub mod ws;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use candle_core::Device;
use cemiface_app::demo_protocol::{DemoLimits, ServerEvent};

use crate::web::error::AppError;
use crate::web::state::AppState;
use model::DemoModel;
use queue::{QueueLimits, SamplingQueue};
use uploads::Uploads;

/// Demo settings (`cemiface serve` options).
#[derive(Debug, Clone)]
pub struct DemoSettings {
    pub queue: QueueLimits,
    /// Largest upload in bytes.
    pub max_upload_bytes: u64,
    /// Largest upload in pixels (width × height).
    pub max_pixels: u64,
    /// Interval of the websocket heartbeat.
    pub heartbeat: Duration,
    /// How long an uploaded face (its aligned crop and embedding, in memory only) is kept unused.
    pub upload_ttl: Duration,
    /// Open demo websockets one client may hold; more are refused with 429.
    pub max_sockets_per_client: usize,
    /// Open demo websockets one address (`web::client_addr`) may hold, whatever client ids it uses.
    pub max_sockets_per_address: usize,
    /// Photo uploads one address may send per minute (each costs a decode and a face alignment).
    pub uploads_per_minute_per_address: u32,
}

/// The generator the demo runs and its queue; replaced as one (`Demo::replace_model`).
#[derive(Clone)]
pub struct Live {
    pub model: Result<Arc<DemoModel>, String>,
    pub queue: Option<SamplingQueue>,
}

/// The demo's state: the model (or why there is none), the queue and the uploads.
pub struct Demo {
    live: std::sync::RwLock<Live>,
    pub uploads: Uploads,
    pub settings: DemoSettings,
    /// Open websockets per client id.
    pub sockets: ws::SocketCounts,
    /// Uploads per address this minute.
    pub upload_counts: crate::web::rate_limit::RateLimiter,
}

impl Demo {
    /// Loads the generator at `checkpoint` and starts the workers. A missing checkpoint is not an
    /// error: the demo then says that no trained generator is installed and how to get one.
    pub fn start(checkpoint: &Path, assets_dir: &Path, device: &Device, settings: DemoSettings) -> Self {
        let model = if !checkpoint.exists() {
            Err(format!(
                "No trained generator is installed: {} does not exist. The shipped one is \
                 models/latent-dcgan (scripts/serve.sh uses it); to train your own, run \
                 cemiface train-diffusion --config latent-dcgan --run-dir runs/latent-dcgan (about \
                 half an hour on a 2-core CPU) and start the server with --generator runs/latent-dcgan.",
                checkpoint.display()
            ))
        } else {
            DemoModel::load(checkpoint, assets_dir, device)
                .map(Arc::new)
                .map_err(|e| {
                    tracing::error!("demo generator not loaded: {e:#}");
                    format!(
                        "The generator at {} could not be loaded: {e:#}",
                        checkpoint.display()
                    )
                })
        };
        if let Ok(m) = &model {
            tracing::info!(checkpoint = %m.info.checkpoint, step = m.info.step, "demo generator loaded");
        }
        let queue = model
            .as_ref()
            .ok()
            .map(|m| SamplingQueue::start(m.clone(), settings.queue.clone()));
        Self {
            live: std::sync::RwLock::new(Live { model, queue }),
            uploads: Uploads::new(settings.upload_ttl),
            settings,
            sockets: Default::default(),
            upload_counts: Default::default(),
        }
    }

    /// A demo without a model (tests of other pages, or before `start`).
    pub fn without_model(reason: &str, settings: DemoSettings) -> Self {
        Self {
            live: std::sync::RwLock::new(Live {
                model: Err(reason.into()),
                queue: None,
            }),
            uploads: Uploads::new(settings.upload_ttl),
            settings,
            sockets: Default::default(),
            upload_counts: Default::default(),
        }
    }

    /// The current generator (or why there is none).
    pub fn model(&self) -> Result<Arc<DemoModel>, String> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).model.clone()
    }

    /// The current sampling queue (None without a model).
    pub fn queue(&self) -> Option<SamplingQueue> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).queue.clone()
    }

    /// Serves `model` from now on, without a restart: a new queue starts on it, the old one
    /// finishes its running step and cancels what waits, and uploaded faces are forgotten (their
    /// C_id belongs to the old model's E_id and μ; visitors upload again).
    pub fn replace_model(&self, model: DemoModel) {
        let model = Arc::new(model);
        tracing::info!(checkpoint = %model.info.checkpoint, step = model.info.step, "demo generator replaced");
        let queue = SamplingQueue::start(model.clone(), self.settings.queue.clone());
        let old = std::mem::replace(
            &mut *self.live.write().unwrap_or_else(|p| p.into_inner()),
            Live {
                model: Ok(model),
                queue: Some(queue),
            },
        );
        if let Some(q) = old.queue {
            q.stop();
        }
        self.uploads.clear();
    }

    /// The limits the page shows.
    pub fn limits(&self) -> DemoLimits {
        DemoLimits {
            max_upload_bytes: self.settings.max_upload_bytes,
            max_pixels: self.settings.max_pixels,
            max_queue: self.settings.queue.max_queue,
            jobs_per_minute: self.settings.queue.jobs_per_minute,
        }
    }

    /// The first event of every socket.
    pub fn hello(&self) -> ServerEvent {
        let model = self.model();
        ServerEvent::Hello {
            model: model.as_ref().ok().map(|m| m.info.clone()),
            no_model: model.err(),
            limits: self.limits(),
        }
    }
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            queue: QueueLimits {
                workers: 1,
                max_queue: 8,
                max_active_per_client: 2,
                jobs_per_minute: 12,
                max_active_per_address: 4,
                address_jobs_per_minute: 30,
                keep_finished: Duration::from_secs(600),
                step_similarity: true,
            },
            max_upload_bytes: 10 << 20,
            max_pixels: 25_000_000,
            heartbeat: Duration::from_secs(15),
            upload_ttl: Duration::from_secs(900),
            max_sockets_per_client: 8,
            max_sockets_per_address: 32,
            uploads_per_minute_per_address: 30,
        }
    }
}

/// A demo request that cannot be served: HTTP status, machine-readable code, plain message.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl DemoError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn too_many(message: String) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }
    pub fn busy(message: String) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", message)
    }
    pub fn not_found(message: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// As a websocket error event.
    pub fn event(&self, job_id: Option<u64>) -> ServerEvent {
        ServerEvent::Error {
            job_id,
            code: self.code.into(),
            message: self.message.clone(),
        }
    }
}

impl From<DemoError> for AppError {
    fn from(e: DemoError) -> Self {
        AppError::BadRequest {
            status: e.status,
            code: e.code,
            message: e.message,
        }
    }
}

/// The demo's routes (under `/api/demo`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/demo/upload", post(upload::upload))
        .route("/api/demo/upload/{id}", delete(upload::forget))
        .route("/api/demo/upload/{id}/crop.png", get(upload::crop))
        .route("/api/demo/ws", get(ws::connect))
}
