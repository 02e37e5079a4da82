//! Shared state of the web server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::FromRef;
use cemiface_engine::assets::{AssetFile, Verifier};
use cemiface_engine::device::ComputeDevice;
use leptos::prelude::LeptosOptions;

use crate::demo::client::ClientKey;
use crate::demo::{Demo, DemoSettings};
use crate::jobs::Jobs;
use crate::web::client_addr::AddrPolicy;

/// Everything handlers need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub leptos: LeptosOptions,
    pub inner: Arc<Inner>,
    /// The live demo (model, sampling queue, uploads).
    pub demo: Arc<Demo>,
    /// Durable jobs, admin and API keys (absent: those routes answer 503).
    pub jobs: Option<Arc<Jobs>>,
    /// How a request's address is found (the connection, or a trusted proxy's header).
    pub addr_policy: AddrPolicy,
    /// Signs the demo's client-id cookies, so that a client cannot choose its id (random per process).
    pub client_key: Arc<ClientKey>,
}

/// The parts of [`AppState`] behind one `Arc`.
pub struct Inner {
    /// Folder of the pinned model assets (`assets/` by default).
    pub assets_dir: PathBuf,
    /// Folder for runs, jobs and uploads (`data/` by default).
    pub data_dir: PathBuf,
    /// The compute device models run on.
    pub device: ComputeDevice,
    /// The files of `assets.lock` this server expects.
    pub assets: Vec<AssetFile>,
    /// Remembers asset hashes so `/healthz` only re-hashes changed files.
    pub verifier: Mutex<Verifier>,
}

impl AppState {
    pub fn new(leptos: LeptosOptions, assets_dir: PathBuf, data_dir: PathBuf, device: ComputeDevice) -> Self {
        let inner = Inner {
            assets_dir,
            data_dir,
            device,
            assets: cemiface_engine::assets::pinned(),
            verifier: Mutex::new(Verifier::default()),
        };
        Self {
            leptos,
            inner: Arc::new(inner),
            demo: Arc::new(Demo::without_model(
                "this server was started without a generator",
                DemoSettings::default(),
            )),
            jobs: None,
            addr_policy: AddrPolicy::default(),
            client_key: Arc::new(ClientKey::random()),
        }
    }

    /// The same state with the address policy `policy`.
    pub fn with_addr_policy(mut self, policy: AddrPolicy) -> Self {
        self.addr_policy = policy;
        self
    }

    /// The same state with the job system `jobs`.
    pub fn with_jobs(mut self, jobs: Jobs) -> Self {
        self.jobs = Some(Arc::new(jobs));
        self
    }

    /// The same state with the live demo `demo`.
    pub fn with_demo(mut self, demo: Demo) -> Self {
        self.demo = Arc::new(demo);
        self
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
