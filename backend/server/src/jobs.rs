//! Durable jobs: the SQLite store, the runner that executes training, generation and evaluation
//! as jobs, admin and API-key authentication, the admin API (`/api/admin`) and the remote
//! dataset-generation API (`/api/v1`, described at `/api/openapi.json`).

pub mod admin_api;
pub mod data_id;
pub mod exec;
pub mod remote_api;
pub mod runner;
pub mod slurm;
pub mod slurm_generate;
pub mod slurm_train;
pub mod spec;
pub mod store;
pub mod tar;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use serde_json::json;

use cemiface_app::admin_protocol::{JobProgress, JobView, SlurmTaskView};

use crate::commands::ctx;
use crate::web::auth::{self, token_hash};
use crate::web::error::AppError;
use crate::web::rate_limit::RateLimiter;
use crate::web::state::AppState;
use cemiface_app::admin_protocol::FieldError;
use runner::{Runner, RunnerSettings};
use spec::JobState;
use store::{JobRow, KeyRow, Store};
use webhook::WebhookPolicy;

/// Name of the admin session cookie.
pub const ADMIN_COOKIE: &str = "cemiface_admin";

/// Jobs, their store and who may touch them.
pub struct Jobs {
    pub store: Arc<Store>,
    pub runner: Arc<Runner>,
    /// The admin password hash; None disables the admin panel.
    pub admin_hash: Option<String>,
    /// Mark cookies `Secure` (serve behind TLS).
    pub secure_cookies: bool,
    /// Where completion webhooks may go.
    pub webhooks: WebhookPolicy,
    /// Requests per API key per minute.
    pub key_limits: RateLimiter,
    /// Login attempts per client address per minute.
    pub logins: RateLimiter,
}

impl Jobs {
    /// Opens `data_dir/cemiface.db`, marks interrupted jobs and starts the runner.
    pub fn start(
        settings: RunnerSettings,
        admin_hash: Option<String>,
        secure_cookies: bool,
        webhooks: WebhookPolicy,
    ) -> anyhow::Result<Self> {
        if let Some(h) = &admin_hash {
            auth::parse_hash(h).map_err(|e| anyhow::anyhow!("the admin password hash is malformed: {e}"))?;
        }
        let db_path = settings.data_dir.join("cemiface.db");
        let store = Arc::new(Store::open(&db_path)?);
        data_id::check(&settings.data_dir, &db_path, &store)?;
        let (s, policy) = (store.clone(), webhooks.clone());
        let runner = Runner::start(
            store.clone(),
            settings,
            Box::new(move |row| send_webhook(&s, &policy, row)),
        )?;
        Ok(Self {
            store,
            runner,
            admin_hash,
            secure_cookies,
            webhooks,
            key_limits: RateLimiter::default(),
            logins: RateLimiter::default(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.runner.settings.data_dir
    }

    /// The public view of a job (API and admin list).
    pub fn view(&self, row: &JobRow) -> JobView {
        let queue = if row.state == JobState::Queued {
            self.queue_ids()
        } else {
            vec![]
        };
        self.view_in(row, &queue)
    }

    /// Views of many jobs, reading the queue once.
    pub fn views(&self, rows: &[JobRow]) -> Vec<JobView> {
        let queue = self.queue_ids();
        rows.iter().map(|r| self.view_in(r, &queue)).collect()
    }

    fn queue_ids(&self) -> Vec<i64> {
        self.store
            .queued()
            .map(|q| q.iter().map(|j| j.id).collect())
            .unwrap_or_default()
    }

    /// The view, given the ids of the queued jobs in run order.
    fn view_in(&self, row: &JobRow, queue: &[i64]) -> JobView {
        JobView {
            id: row.id,
            kind: row.kind.as_str().to_owned(),
            state: row.state,
            owner: row.owner.clone(),
            device: row.device.clone(),
            queue_position: queue.iter().position(|&id| id == row.id),
            progress: JobProgress::from_report(
                row.done,
                row.total,
                &row.unit,
                row.rate,
                row.state == JobState::Running,
            ),
            error: row.error.clone(),
            phase: self.runner.phase(row.id).map(str::to_owned),
            spec: serde_json::to_value(&row.spec).expect("plain data"),
            webhook_url: row.webhook_url.clone(),
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            slurm: self
                .store
                .slurm_tasks(row.id)
                .unwrap_or_default()
                .into_iter()
                .map(|s| SlurmTaskView {
                    shard: s.shard,
                    slurm_id: s.slurm_id,
                    attempt: s.attempt,
                    state: s.state,
                })
                .collect(),
        }
    }

    /// Checks a new job's references to other jobs.
    pub fn check_refs(&self, spec: &spec::JobSpec) -> Result<(), AppError> {
        use spec::{job_ref, JobKind, JobSpec};
        let check = |field: &str, r: &str, kind: JobKind| -> Option<FieldError> {
            let id = job_ref(r)?;
            let ok = matches!(self.store.job(id), Ok(Some(j)) if j.kind == kind);
            (!ok).then(|| FieldError {
                field: field.into(),
                message: format!("job {id} is not a {} job", kind.as_str()),
            })
        };
        let errors: Vec<FieldError> = match spec {
            JobSpec::Generate(g) => check("generator", &g.generator, JobKind::TrainDiffusion)
                .into_iter()
                .collect(),
            JobSpec::TrainFr(t) => check("data", &t.data, JobKind::Generate).into_iter().collect(),
            JobSpec::Eval(v) => v
                .checkpoint
                .as_deref()
                .and_then(|c| check("checkpoint", c, JobKind::TrainFr))
                .into_iter()
                .collect(),
            JobSpec::TrainDiffusion(_) => vec![],
        };
        if let JobSpec::Generate(g) = spec {
            if g.generator == "default" && !self.runner.settings.default_generator.exists() {
                return Err(invalid(vec![FieldError {
                    field: "generator".into(),
                    message: "this server has no default generator installed".into(),
                }]));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(errors))
        }
    }

    /// Validates and queues a job.
    pub fn submit(
        &self,
        spec: &spec::JobSpec,
        owner: &str,
        paths_allowed: bool,
        webhook_url: Option<&str>,
    ) -> Result<i64, AppError> {
        spec.validate(paths_allowed, &spec::presets()).map_err(invalid)?;
        self.check_refs(spec)?;
        let id = self
            .store
            .insert_job(spec, owner, &self.runner.settings.device_label, webhook_url)?;
        self.runner.publish(runner::JobEvent::State {
            id,
            state: JobState::Queued,
            error: None,
        });
        self.runner.poke();
        Ok(id)
    }

    /// Cancels a job in any unfinished state.
    pub fn cancel(&self, row: &JobRow) -> Result<(), AppError> {
        if row.state.is_final() {
            return Err(conflict(format!("job {} is already {}", row.id, row.state)));
        }
        if !self.runner.request(row.id, ctx::Stop::Cancelled) {
            self.store.set_state(row.id, JobState::Cancelled, None)?;
            self.runner.publish(runner::JobEvent::State {
                id: row.id,
                state: JobState::Cancelled,
                error: None,
            });
        }
        Ok(())
    }

    /// Pauses a running job (it checkpoints first) or holds a queued one.
    pub fn pause(&self, row: &JobRow) -> Result<(), AppError> {
        if !row.kind.pausable() {
            return Err(conflict(
                "evaluation jobs cannot pause; cancel and run them again",
            ));
        }
        if matches!(self.runner.settings.executor, runner::Executor::Slurm(_)) {
            return Err(conflict(
                "jobs run as Slurm tasks cannot pause (Slurm would have to hold running tasks); cancel \
                 and resume later: finished identities and checkpoints are kept",
            ));
        }
        match row.state {
            JobState::Running if self.runner.request(row.id, ctx::Stop::Paused) => Ok(()),
            JobState::Queued => {
                self.store.set_state(row.id, JobState::Paused, None)?;
                self.runner.publish(runner::JobEvent::State {
                    id: row.id,
                    state: JobState::Paused,
                    error: None,
                });
                Ok(())
            }
            s => Err(conflict(format!("job {} is {s}, not running or queued", row.id))),
        }
    }

    /// Queues a paused, interrupted, failed or cancelled job again; it continues from its last
    /// checkpoint (generation: from its last finished identity).
    pub fn resume(&self, row: &JobRow) -> Result<(), AppError> {
        if !row.state.resumable() {
            return Err(conflict(format!(
                "job {} is {}; only paused, interrupted, failed or cancelled jobs resume",
                row.id, row.state
            )));
        }
        self.store.requeue(row.id)?;
        // Training restarts from its newest checkpoint: curves and progress go back to it now,
        // not when the run reports in.
        let run = runner::job_dir(self.data_dir(), row.id).join("run");
        if let Some(step) = exec::resume_point(&run) {
            self.store.truncate_metrics(row.id, step)?;
            self.store
                .set_progress(row.id, step, row.total, &row.unit, None)?;
        }
        self.runner.publish(runner::JobEvent::State {
            id: row.id,
            state: JobState::Queued,
            error: None,
        });
        self.runner.poke();
        Ok(())
    }
}

/// 422 with field errors.
pub fn invalid(fields: Vec<FieldError>) -> AppError {
    let message = fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ");
    AppError::Invalid { message, fields }
}

/// 409.
pub fn conflict(message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::CONFLICT, "conflict", message)
}

/// Parses a JSON body into `T`; malformed JSON or unknown fields are a 422 naming the field.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
            .unwrap_or("body")
            .to_owned();
        invalid(vec![FieldError { field, message: msg }])
    })
}

fn send_webhook(store: &Store, policy: &WebhookPolicy, row: &JobRow) {
    let (Some(url), Some(key_id)) = (
        row.webhook_url.clone(),
        row.owner.strip_prefix("key:").and_then(|k| k.parse::<i64>().ok()),
    ) else {
        return;
    };
    let Ok(Some(key)) = store.key(key_id) else {
        return;
    };
    let body = json!({
        "event": "generation.finished", "id": row.id, "state": row.state, "error": row.error,
        "finished_at": row.finished_at,
    })
    .to_string();
    let (id, policy) = (row.id, policy.clone());
    // The runner calls this from its own threads: the delivery (with its retries) gets a thread and a
    // small runtime of its own, so a slow receiver never holds up a job slot.
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::warn!(job = id, "webhook not sent: {e}"),
        };
        match rt.block_on(policy.deliver(&url, &key.webhook_secret, body.as_bytes())) {
            Ok(code) => tracing::info!(job = id, code, "webhook delivered"),
            Err(e) => tracing::warn!(job = id, "webhook to {url:?} failed: {e}"),
        }
    });
}

/// The job system of a request's server, or 503 when it runs without one.
pub fn jobs_of(state: &AppState) -> Result<Arc<Jobs>, AppError> {
    state.jobs.clone().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "jobs_disabled",
            "this server runs without the job system",
        )
    })
}

/// A logged-in admin. State-changing requests must carry the session's CSRF token.
pub struct Admin {
    pub jobs: Arc<Jobs>,
    pub csrf: String,
    /// The hash of the session's cookie (sessions are stored by it).
    pub session: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let jobs = jobs_of(state)?;
        if jobs.admin_hash.is_none() {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "admin_disabled",
                "the admin panel is off: this server has no admin password. To turn it on, make a hash with \
                 `cemiface hash-password` and restart the server with CEMIFACE_ADMIN_PASSWORD_HASH set to it.",
            ));
        }
        let unauthorized =
            || AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", "log in at /admin first");
        let token = auth::cookie(&parts.headers, ADMIN_COOKIE).ok_or_else(unauthorized)?;
        let session = token_hash(&token);
        let csrf = jobs.store.session(&session)?.ok_or_else(unauthorized)?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !auth::constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
                return Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "missing or wrong X-CSRF-Token header",
                ));
            }
        }
        Ok(Self { jobs, csrf, session })
    }
}

/// A caller of the remote API, by its key (`Authorization: Bearer <key>`), rate-limited.
pub struct ApiCaller {
    pub jobs: Arc<Jobs>,
    pub key: KeyRow,
}

impl ApiCaller {
    /// The owner string of this caller's jobs.
    pub fn owner(&self) -> String {
        format!("key:{}", self.key.id)
    }

    /// 403 unless the key holds `scope`.
    pub fn require(&self, scope: &str) -> Result<(), AppError> {
        if self.key.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this key lacks the `{scope}` scope"),
            ))
        }
    }

    /// The caller's own job (others' jobs are "not found", never "forbidden").
    pub fn own_job(&self, id: i64) -> Result<JobRow, AppError> {
        match self.jobs.store.job(id)? {
            Some(j) if j.owner == self.owner() && j.kind == spec::JobKind::Generate => Ok(j),
            _ => Err(AppError::not_found(format!("no generation {id}"))),
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let jobs = jobs_of(state)?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send an API key as `Authorization: Bearer <key>`",
                )
            })?;
        let key = jobs
            .store
            .key_by_hash(&token_hash(token.trim()))?
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unknown or revoked API key",
                )
            })?;
        if let Err(wait) = jobs
            .key_limits
            .hit(&format!("key:{}", key.id), key.rate_per_minute)
        {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this key may make {} requests a minute; retry in {wait} s",
                    key.rate_per_minute
                ),
            ));
        }
        Ok(Self { jobs, key })
    }
}
