//! `/api/admin/*`: login, jobs (launch, list, detail, curves, files, cancel / pause / resume),
//! API keys and the system panel. Every route but login needs an admin session.

use std::path::{Component, Path as FsPath};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::runner::job_dir;
use super::spec::{JobKind, JobSpec, JobState};
use super::store::{now, JobRow, KeyLimits};
use super::{invalid, jobs_of, parse_body, tar, Admin, Jobs, ADMIN_COOKIE};
use crate::web::auth::{self, hex, random_bytes, token_hash, SCOPES};
use crate::web::client_addr::ClientAddr;
use crate::web::error::AppError;
use crate::web::state::AppState;
use cemiface_app::admin_protocol::FieldError;
use cemiface_app::admin_protocol::{
    ArtifactView, CreatedKey, JobDetail, JobView, KeyView, LogLine, Memory, Metrics, Presets, QueueCounts,
    Session, SystemStatus,
};
use cemiface_app::demo_protocol::ModelInfo;

/// How long an admin session lasts.
const SESSION_SECONDS: f64 = 12.0 * 3600.0;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/login", post(login))
        .route("/api/admin/logout", post(logout))
        .route("/api/admin/session", get(session))
        .route("/api/admin/presets", get(presets))
        .route("/api/admin/jobs", get(list).post(create))
        .route("/api/admin/jobs/{id}", get(detail))
        .route("/api/admin/jobs/{id}/metrics", get(metrics))
        .route("/api/admin/jobs/{id}/cancel", post(cancel))
        .route("/api/admin/jobs/{id}/pause", post(pause))
        .route("/api/admin/jobs/{id}/resume", post(resume))
        .route("/api/admin/jobs/{id}/files/{*path}", get(file))
        .route("/api/admin/jobs/{id}/dataset.tar", get(dataset_tar))
        .route("/api/admin/jobs/{id}/checkpoints/{step}", get(checkpoint_tar))
        .route("/api/admin/jobs/{id}/use-as-demo", post(use_as_demo))
        .route("/api/admin/keys", get(keys).post(create_key))
        .route("/api/admin/keys/{id}", delete(revoke_key))
        .route("/api/admin/system", get(system))
        .route("/api/admin/events", get(events))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    password: String,
}

fn set_cookie(jobs: &Jobs, value: &str, max_age: i64) -> HeaderValue {
    let secure = if jobs.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{ADMIN_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("ASCII cookie")
}

/// Failed logins one address may make per minute.
const LOGIN_FAILURES_PER_MINUTE: u32 = 10;

/// `POST /api/admin/login`. Only failures count against the address (`web::client_addr`) they
/// came from: a blocked address waits a minute; other addresses, and so the admin, are not affected.
async fn login(State(st): State<AppState>, addr: ClientAddr, body: Bytes) -> Result<Response, AppError> {
    let jobs = jobs_of(&st)?;
    let Some(hash) = jobs.admin_hash.clone() else {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_disabled",
            "no admin password is configured: set CEMIFACE_ADMIN_PASSWORD_HASH (make one with `cemiface hash-password`)",
        ));
    };
    let too_many = |wait| {
        AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed login attempts from your address; retry in {wait} s"),
        )
    };
    jobs.logins
        .check(&addr.0, LOGIN_FAILURES_PER_MINUTE)
        .map_err(too_many)?;
    let req: Login = parse_body(&body)?;
    // A PBKDF2 hash of an earlier version is checked once more, then replaced by Argon2id in the store.
    let configured = token_hash(&hash);
    let effective = jobs.store.upgraded_password(&configured)?.unwrap_or(hash);
    let (ok, upgrade) = tokio::task::spawn_blocking(move || {
        let ok = auth::verify_password(&effective, &req.password);
        let stale = auth::parse_hash(&effective).is_ok_and(|h| h.needs_upgrade());
        (ok, (ok && stale).then(|| auth::hash_password(&req.password)))
    })
    .await
    .map_err(anyhow::Error::from)?;
    if !ok {
        jobs.logins
            .hit(&addr.0, LOGIN_FAILURES_PER_MINUTE)
            .map_err(too_many)?;
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong password",
        ));
    }
    if let Some(new_hash) = upgrade {
        jobs.store.save_upgraded_password(&configured, &new_hash)?;
        tracing::info!(
            "the admin password hash was upgraded from PBKDF2 to Argon2id in the job store; \
             `cemiface hash-password` makes an Argon2id hash for CEMIFACE_ADMIN_PASSWORD_HASH"
        );
    }
    let token = hex(&random_bytes(32));
    let csrf = hex(&random_bytes(16));
    jobs.store
        .add_session(&token_hash(&token), &csrf, now() + SESSION_SECONDS)?;
    let mut res = Json(Session { csrf }).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&jobs, &token, SESSION_SECONDS as i64),
    );
    Ok(res)
}

async fn logout(admin: Admin, headers: HeaderMap) -> Result<Response, AppError> {
    let token = crate::web::auth::cookie(&headers, ADMIN_COOKIE).unwrap_or_default();
    admin.jobs.store.remove_session(&token_hash(&token))?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&admin.jobs, "", 0));
    Ok(res)
}

async fn session(admin: Admin) -> Json<Session> {
    Json(Session { csrf: admin.csrf })
}

async fn presets(_admin: Admin) -> Json<Presets> {
    Json(super::spec::presets())
}

async fn list(admin: Admin) -> Result<Json<Vec<JobView>>, AppError> {
    let rows = admin.jobs.store.jobs(None, 200)?;
    Ok(Json(admin.jobs.views(&rows)))
}

async fn create(admin: Admin, body: Bytes) -> Result<(StatusCode, Json<JobView>), AppError> {
    let spec: JobSpec = parse_body(&body)?;
    let id = admin.jobs.submit(&spec, "admin", true, None)?;
    let row = admin.jobs.store.job(id)?.expect("just inserted");
    Ok((StatusCode::CREATED, Json(admin.jobs.view(&row))))
}

fn job(jobs: &Jobs, id: i64) -> Result<JobRow, AppError> {
    jobs.store
        .job(id)?
        .ok_or_else(|| AppError::not_found(format!("no job {id}")))
}

async fn detail(admin: Admin, Path(id): Path<i64>) -> Result<Json<JobDetail>, AppError> {
    let row = job(&admin.jobs, id)?;
    Ok(Json(JobDetail {
        job: admin.jobs.view(&row),
        artifacts: admin
            .jobs
            .store
            .artifacts(id)?
            .into_iter()
            .map(|a| ArtifactView {
                kind: a.kind,
                path: a.path,
                step: a.step,
                bytes: a.bytes,
                created_at: a.created_at,
            })
            .collect(),
        logs: admin
            .jobs
            .store
            .logs(id, 200)?
            .into_iter()
            .map(|(at, line)| LogLine { at, line })
            .collect(),
    }))
}

/// Every metric of a job, each downsampled to at most 1000 points: `{"loss": [[step, value]]}`.
async fn metrics(admin: Admin, Path(id): Path<i64>) -> Result<Json<Metrics>, AppError> {
    job(&admin.jobs, id)?;
    let mut out = Metrics::new();
    for key in admin.jobs.store.metric_keys(id)? {
        let n = admin.jobs.store.metric_count(id, &key)?;
        let stride = n.div_ceil(1000).max(1);
        let points = admin.jobs.store.metric(id, &key, 0, stride)?;
        out.insert(key, points);
    }
    Ok(Json(out))
}

async fn cancel(admin: Admin, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
    admin.jobs.cancel(&job(&admin.jobs, id)?)?;
    Ok(StatusCode::ACCEPTED)
}

async fn pause(admin: Admin, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
    admin.jobs.pause(&job(&admin.jobs, id)?)?;
    Ok(StatusCode::ACCEPTED)
}

async fn resume(admin: Admin, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
    admin.jobs.resume(&job(&admin.jobs, id)?)?;
    Ok(StatusCode::ACCEPTED)
}

async fn file(admin: Admin, Path((id, path)): Path<(i64, String)>) -> Result<Response, AppError> {
    job(&admin.jobs, id)?;
    send_file(&admin.jobs, id, &path).await
}

async fn dataset_tar(admin: Admin, Path(id): Path<i64>) -> Result<Response, AppError> {
    let row = job(&admin.jobs, id)?;
    send_dataset(&admin.jobs, &row).await
}

/// `GET /api/admin/jobs/{id}/checkpoints/{step}`: the checkpoint a job recorded at `step` (a
/// folder: `state.json`, weights, μ) as `cemiface-job-<id>-step<step>.tar`, to load elsewhere with
/// `--checkpoint`/`--generator` after unpacking.
async fn checkpoint_tar(admin: Admin, Path((id, step)): Path<(i64, u64)>) -> Result<Response, AppError> {
    job(&admin.jobs, id)?;
    let artifact = admin
        .jobs
        .store
        .artifacts(id)?
        .into_iter()
        .rev()
        .find(|a| a.kind == "checkpoint" && a.step == Some(step))
        .ok_or_else(|| AppError::not_found(format!("job {id} has no checkpoint at step {step}")))?;
    let rel = FsPath::new(&artifact.path);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(AppError::not_found(format!(
            "job {id}'s checkpoint {} is not inside its folder",
            artifact.path
        )));
    }
    let root = job_dir(admin.jobs.data_dir(), id).join(rel);
    if !root.join("state.json").is_file() {
        return Err(AppError::not_found(format!(
            "job {id}'s checkpoint at step {step} is gone (pruned?)"
        )));
    }
    let prefix = format!("cemiface-job-{id}-step{step}");
    let members = tar::members(&root, &prefix, |rel| rel.contains(".tmp")).map_err(anyhow::Error::from)?;
    let len = tar::archive_len(&members).map_err(anyhow::Error::from)?;
    Ok(stream(
        len,
        "application/x-tar",
        Some(format!("{prefix}.tar")),
        move |send| tar::write(&members, send),
    ))
}

/// `POST /api/admin/jobs/{id}/use-as-demo`: the newest checkpoint of a finished diffusion training
/// job becomes the demo's generator now, without a restart (until the server restarts with its
/// `--generator`). Visitors' uploaded faces are forgotten: their C_id belongs to the old model.
async fn use_as_demo(
    admin: Admin,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ModelInfo>, AppError> {
    let row = job(&admin.jobs, id)?;
    if row.kind != JobKind::TrainDiffusion || row.state != JobState::Succeeded {
        return Err(super::conflict(format!(
            "job {id} is a {} job ({}); only a finished train-diffusion job can serve the demo",
            row.kind.as_str(),
            row.state
        )));
    }
    let newest = admin
        .jobs
        .store
        .artifacts(id)?
        .into_iter()
        .filter(|a| a.kind == "checkpoint")
        .max_by_key(|a| a.step)
        .ok_or_else(|| AppError::not_found(format!("job {id} recorded no checkpoint")))?;
    let dir = job_dir(admin.jobs.data_dir(), id).join(&newest.path);
    let (assets, device) = (st.inner.assets_dir.clone(), st.inner.device.device.clone());
    let model =
        tokio::task::spawn_blocking(move || crate::demo::model::DemoModel::load(&dir, &assets, &device))
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(|e| {
                AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_checkpoint",
                    format!("{e:#}"),
                )
            })?;
    let info = model.info.clone();
    st.demo.replace_model(model);
    admin
        .jobs
        .store
        .add_log(id, &format!("now serving the demo (step {})", info.step))
        .ok();
    Ok(Json(info))
}

/// Streams a file of a job's folder (no path may leave the folder).
pub async fn send_file(jobs: &Jobs, id: i64, rel: &str) -> Result<Response, AppError> {
    let rel_path = FsPath::new(rel);
    if rel.is_empty() || rel_path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "a relative path inside the job's folder",
        ));
    }
    let root = job_dir(jobs.data_dir(), id);
    let path = root.join(rel_path);
    // Never through a symbolic link: every folder on the way and the file itself must be real.
    let mut at = root.clone();
    let mut meta = None;
    for c in rel_path.components() {
        at.push(c);
        meta = tokio::fs::symlink_metadata(&at)
            .await
            .ok()
            .filter(|m| !m.file_type().is_symlink());
        if meta.is_none() {
            break;
        }
    }
    let meta = meta
        .filter(|m| m.is_file())
        .ok_or_else(|| AppError::not_found(format!("job {id} has no file {rel}")))?;
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("json") => "application/json",
        Some("jsonl" | "toml" | "txt" | "lst") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    let size = meta.len();
    Ok(stream(size, kind, None, move |send| {
        tar::send_chunks(&path, size, send).map(|_| ())
    }))
}

/// Streams a finished generation job's data set as `cemiface-job-<id>.tar` (without `train.rec`
/// and `train.idx`, which download on their own).
pub async fn send_dataset(jobs: &Jobs, row: &JobRow) -> Result<Response, AppError> {
    if row.state != JobState::Succeeded {
        return Err(super::conflict(format!(
            "job {} is {}; its data set downloads once it succeeded",
            row.id, row.state
        )));
    }
    let root = job_dir(jobs.data_dir(), row.id).join("dataset");
    if !root.is_dir() {
        return Err(AppError::not_found(format!("job {} has no data set", row.id)));
    }
    let prefix = format!("cemiface-job-{}", row.id);
    let members = tar::members(&root, &prefix, |rel| {
        // Shard markers are bookkeeping (a local and a Slurm run differ there, not in the data).
        matches!(rel, "train.rec" | "train.idx") || rel.contains(".tmp") || rel.starts_with("shards/")
    })
    .map_err(anyhow::Error::from)?;
    let len = tar::archive_len(&members).map_err(anyhow::Error::from)?;
    Ok(stream(
        len,
        "application/x-tar",
        Some(format!("{prefix}.tar")),
        move |send| tar::write(&members, send),
    ))
}

/// A response whose body a blocking thread writes in chunks (backpressure: 8 chunks in flight).
fn stream(
    len: u64,
    content_type: &'static str,
    attachment: Option<String>,
    produce: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) -> std::io::Result<()> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let tx2 = tx.clone();
        let mut send = |chunk: Vec<u8>| tx2.blocking_send(Ok(Bytes::from(chunk))).is_ok();
        if let Err(e) = produce(&mut send) {
            tracing::warn!("download stopped: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(name) = attachment {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    res
}

async fn keys(admin: Admin) -> Result<Json<Vec<KeyView>>, AppError> {
    Ok(Json(
        admin.jobs.store.keys()?.into_iter().map(|k| k.view).collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default = "all_scopes")]
    scopes: Vec<String>,
    #[serde(default = "default_rate")]
    rate_per_minute: u32,
    #[serde(default = "default_quota")]
    quota_images: u64,
    /// Jobs the key may have queued, running, paused or interrupted at once.
    #[serde(default = "default_active_jobs")]
    max_active_jobs: u32,
    /// Identities one of its jobs may ask for (inquiry selection costs grow with it).
    #[serde(default = "default_max_identities")]
    max_identities: u64,
}

fn all_scopes() -> Vec<String> {
    SCOPES.iter().map(|s| s.to_string()).collect()
}
fn default_rate() -> u32 {
    120
}
fn default_quota() -> u64 {
    100_000
}
fn default_active_jobs() -> u32 {
    2
}
fn default_max_identities() -> u64 {
    10_000
}

/// Creates a key; the key and its webhook secret are shown once, in this response.
async fn create_key(admin: Admin, body: Bytes) -> Result<(StatusCode, Json<CreatedKey>), AppError> {
    let req: NewKey = parse_body(&body)?;
    let mut errors = Vec::new();
    if req.name.trim().is_empty() || req.name.len() > 100 {
        errors.push(FieldError {
            field: "name".into(),
            message: "1 to 100 characters".into(),
        });
    }
    if req.scopes.is_empty() || req.scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        errors.push(FieldError {
            field: "scopes".into(),
            message: format!("one or more of {}", SCOPES.join(", ")),
        });
    }
    if req.rate_per_minute == 0 {
        errors.push(FieldError {
            field: "rate_per_minute".into(),
            message: "at least 1".into(),
        });
    }
    if req.max_active_jobs == 0 {
        errors.push(FieldError {
            field: "max_active_jobs".into(),
            message: "at least 1".into(),
        });
    }
    if !(1..=100_000).contains(&req.max_identities) {
        errors.push(FieldError {
            field: "max_identities".into(),
            message: "between 1 and 100000".into(),
        });
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let key = format!("cf_{}", hex(&random_bytes(24)));
    let secret = hex(&random_bytes(24));
    let id = admin.jobs.store.add_key(
        req.name.trim(),
        &key[..11],
        &token_hash(&key),
        &req.scopes,
        &secret,
        &KeyLimits {
            rate_per_minute: req.rate_per_minute,
            quota_images: req.quota_images,
            max_active_jobs: req.max_active_jobs,
            max_identities: req.max_identities,
        },
    )?;
    let view = admin.jobs.store.key(id)?.expect("just inserted").view;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            view,
            key,
            webhook_secret: secret,
        }),
    ))
}

async fn revoke_key(admin: Admin, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
    if admin.jobs.store.revoke_key(id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("no live key {id}")))
    }
}

fn meminfo(field: &str, text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

async fn system(admin: Admin, State(st): State<AppState>) -> Result<Json<SystemStatus>, AppError> {
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let me = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let counts = admin.jobs.store.state_counts()?;
    let count = |s: JobState| {
        counts
            .iter()
            .find(|(k, _)| k == s.as_str())
            .map_or(0, |(_, n)| *n)
    };
    Ok(Json(SystemStatus {
        device: st.inner.device.label.clone(),
        cuda_compiled: cemiface_engine::device::CUDA_COMPILED,
        cpu_threads: cemiface_engine::device::ComputeDevice::cpu_threads(),
        memory: Memory {
            total: meminfo("MemTotal:", &mem),
            available: meminfo("MemAvailable:", &mem),
            server_rss: meminfo("VmRSS:", &me),
        },
        queue: QueueCounts {
            queued: count(JobState::Queued),
            running: count(JobState::Running),
            paused: count(JobState::Paused),
            interrupted: count(JobState::Interrupted),
            slots: admin.jobs.runner.settings.slots,
        },
        demo_generator: st.demo.model().ok().map(|m| m.info.checkpoint.clone()),
        time: now(),
    }))
}

/// `GET /api/admin/events` (websocket): every event of every job as a JSON [`JobEvent`], for the
/// admin pages to update in place instead of polling. A client that falls behind is disconnected
/// (it reconnects and fetches fresh views); the socket closes when the session is logged out.
async fn events(
    admin: Admin,
    headers: axum::http::HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<axum::response::Response, AppError> {
    use axum::extract::ws::Message;
    if !crate::web::auth::same_origin(&headers) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "the event stream is for this server's own pages",
        ));
    }
    // A read-only feed: nothing the browser sends needs more than a small frame.
    let ws = ws.max_message_size(4 << 10).max_frame_size(4 << 10);
    let mut rx = admin.jobs.runner.events.subscribe();
    Ok(ws.on_upgrade(move |mut socket| async move {
        loop {
            tokio::select! {
                e = rx.recv() => {
                    let Ok(e) = e else { break };
                    let text = serde_json::to_string(&e).expect("plain data");
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                m = socket.recv() => match m {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                    // A logged-out session stops receiving.
                    let live = matches!(admin.jobs.store.session(&admin.session), Ok(Some(_)));
                    if !live || socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    }))
}
