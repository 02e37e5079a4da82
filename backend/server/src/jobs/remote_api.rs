//! `/api/v1/generations`: the remote dataset-generation API for scripts on other machines, with
//! API keys (`Authorization: Bearer <key>`, scopes `generate` and `read`), per-key rate limits and
//! image quotas, a websocket of events, artifacts, the data set as a streamed tar (and `.rec/.idx`)
//! and an optional signed completion webhook. Described by `/api/openapi.json`.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::admin_api::{send_dataset, send_file};
use super::runner::{job_dir, JobEvent};
use super::spec::{GenerateSpec, JobSpec, JobState};
use super::{invalid, parse_body, ApiCaller};
use crate::web::error::AppError;
use crate::web::state::AppState;
use cemiface_app::admin_protocol::FieldError;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/generations", get(list).post(submit))
        .route("/api/v1/generations/{id}", get(status).delete(cancel))
        .route("/api/v1/generations/{id}/resume", post(resume))
        .route("/api/v1/generations/{id}/log", get(log))
        .route("/api/v1/generations/{id}/events", get(events))
        .route("/api/v1/generations/{id}/artifacts", get(artifacts))
        .route("/api/v1/generations/{id}/files/{*path}", get(file))
        .route("/api/v1/generations/{id}/dataset.tar", get(dataset))
        .route("/api/v1/generations/{id}/train.rec", get(rec))
        .route("/api/v1/generations/{id}/train.idx", get(idx))
}

async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

/// `POST /api/v1/generations`: the generate-job fields, plus an optional `webhook_url`.
async fn submit(caller: ApiCaller, body: Bytes) -> Result<(StatusCode, Json<Value>), AppError> {
    caller.require("generate")?;
    let mut v: Value = parse_body(&body)?;
    let webhook_url = match v.as_object_mut().and_then(|o| o.remove("webhook_url")) {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            caller.jobs.webhooks.check_url(&u).map_err(|m| {
                invalid(vec![FieldError {
                    field: "webhook_url".into(),
                    message: m,
                }])
            })?;
            Some(u)
        }
        Some(_) => {
            return Err(invalid(vec![FieldError {
                field: "webhook_url".into(),
                message: "must be a string".into(),
            }]))
        }
    };
    let g: GenerateSpec = parse_body(v.to_string().as_bytes())?;
    let spec = JobSpec::Generate(g);
    spec.validate(false, &super::spec::presets()).map_err(invalid)?;
    let key = &caller.key;
    if let JobSpec::Generate(g) = &spec {
        if g.identities as u64 > key.max_identities {
            let message = format!(
                "this key may ask for at most {} identities per job",
                key.max_identities
            );
            return Err(invalid(vec![FieldError {
                field: "identities".into(),
                message,
            }]));
        }
    }
    let active = caller.jobs.store.active_jobs(&caller.owner())?;
    if active >= key.max_active_jobs as u64 {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_jobs",
            format!(
                "this key may have {} jobs queued, running, paused or interrupted at once and has {active}; \
                 wait for one to finish or cancel one",
                key.max_active_jobs
            ),
        ));
    }
    let used = caller.jobs.store.images_requested(&caller.owner())?;
    if used + spec.planned_images() > caller.key.quota_images {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "this key may request {} images in all; {used} are used and this asks for {}",
                caller.key.quota_images,
                spec.planned_images()
            ),
        ));
    }
    let id = caller
        .jobs
        .submit(&spec, &caller.owner(), false, webhook_url.as_deref())?;
    Ok((StatusCode::ACCEPTED, Json(view(&caller, id)?)))
}

fn view(caller: &ApiCaller, id: i64) -> Result<Value, AppError> {
    let row = caller.own_job(id)?;
    Ok(for_caller(
        serde_json::to_value(caller.jobs.view(&row)).expect("plain data"),
        id,
    ))
}

/// A job view as a key holder sees it: without the owner, with the URLs to follow it.
fn for_caller(mut v: Value, id: i64) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("owner");
        o.insert(
            "events_url".into(),
            json!(format!("/api/v1/generations/{id}/events")),
        );
        o.insert(
            "dataset_url".into(),
            json!(format!("/api/v1/generations/{id}/dataset.tar")),
        );
    }
    v
}

async fn list(caller: ApiCaller) -> Result<Json<Value>, AppError> {
    caller.require("read")?;
    let rows = caller.jobs.store.jobs(Some(&caller.owner()), 500)?;
    let views = caller.jobs.views(&rows);
    Ok(Json(
        rows.iter()
            .zip(views)
            .map(|(r, v)| for_caller(serde_json::to_value(v).expect("plain data"), r.id))
            .collect(),
    ))
}

async fn status(caller: ApiCaller, Path(id): Path<i64>) -> Result<Json<Value>, AppError> {
    caller.require("read")?;
    Ok(Json(view(&caller, id)?))
}

/// `GET /api/v1/generations/{id}/log`: the job's last 500 log lines, `[{at, line}]`.
async fn log(caller: ApiCaller, Path(id): Path<i64>) -> Result<Json<Value>, AppError> {
    caller.require("read")?;
    caller.own_job(id)?;
    let lines = caller.jobs.store.logs(id, 500)?;
    Ok(Json(
        lines
            .into_iter()
            .map(|(at, line)| json!({"at": at, "line": line}))
            .collect(),
    ))
}

async fn cancel(caller: ApiCaller, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
    caller.require("generate")?;
    let row = caller.own_job(id)?;
    caller.jobs.cancel(&row)?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /api/v1/generations/{id}/resume`: a paused, interrupted, failed or cancelled job goes on
/// from its finished identities. It counts against the key's jobs at once again, and the images
/// a cancellation refunded count against its quota again.
async fn resume(caller: ApiCaller, Path(id): Path<i64>) -> Result<(StatusCode, Json<Value>), AppError> {
    caller.require("generate")?;
    let row = caller.own_job(id)?;
    if row.state.resumable() {
        let key = &caller.key;
        let active = caller.jobs.store.active_jobs(&caller.owner())?;
        let counted = matches!(row.state, JobState::Paused | JobState::Interrupted);
        if !counted && active >= key.max_active_jobs as u64 {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_jobs",
                format!(
                    "this key may have {} jobs at once and has {active}",
                    key.max_active_jobs
                ),
            ));
        }
        if matches!(row.state, JobState::Cancelled | JobState::Failed) {
            let used = caller.jobs.store.images_requested(&caller.owner())?;
            let back = row.spec.planned_images().saturating_sub(row.done);
            if used + back > key.quota_images {
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    format!(
                        "this key may request {} images in all; {used} are used and resuming asks for {back} more",
                        key.quota_images
                    ),
                ));
            }
        }
    }
    caller.jobs.resume(&row)?;
    Ok((StatusCode::ACCEPTED, Json(view(&caller, id)?)))
}

async fn artifacts(caller: ApiCaller, Path(id): Path<i64>) -> Result<Json<Value>, AppError> {
    caller.require("read")?;
    caller.own_job(id)?;
    let list: Vec<Value> = caller
        .jobs
        .store
        .artifacts(id)?
        .into_iter()
        .map(|a| {
            let url = if a.kind == "dataset" {
                format!("/api/v1/generations/{id}/dataset.tar")
            } else {
                format!("/api/v1/generations/{id}/files/{}", a.path)
            };
            json!({"kind": a.kind, "path": a.path, "bytes": a.bytes, "step": a.step, "url": url})
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

async fn file(caller: ApiCaller, Path((id, path)): Path<(i64, String)>) -> Result<Response, AppError> {
    caller.require("read")?;
    caller.own_job(id)?;
    // Only what the job recorded as an artifact, not anything in its folder.
    if !caller
        .jobs
        .store
        .artifacts(id)?
        .iter()
        .any(|a| a.path == path && a.kind != "dataset")
    {
        return Err(AppError::not_found(format!(
            "generation {id} has no artifact {path}"
        )));
    }
    send_file(&caller.jobs, id, &path).await
}

async fn dataset(caller: ApiCaller, Path(id): Path<i64>) -> Result<Response, AppError> {
    caller.require("read")?;
    let row = caller.own_job(id)?;
    send_dataset(&caller.jobs, &row).await
}

async fn recordio(caller: ApiCaller, id: i64, name: &str) -> Result<Response, AppError> {
    caller.require("read")?;
    caller.own_job(id)?;
    if !job_dir(caller.jobs.data_dir(), id)
        .join("dataset")
        .join(name)
        .is_file()
    {
        return Err(AppError::not_found(format!(
            "generation {id} has no {name} (request it with \"rec\": true; it appears when the job succeeds)"
        )));
    }
    send_file(&caller.jobs, id, &format!("dataset/{name}")).await
}

async fn rec(caller: ApiCaller, Path(id): Path<i64>) -> Result<Response, AppError> {
    recordio(caller, id, "train.rec").await
}

async fn idx(caller: ApiCaller, Path(id): Path<i64>) -> Result<Response, AppError> {
    recordio(caller, id, "train.idx").await
}

/// `GET /api/v1/generations/{id}/events` (websocket): the current status, then every event of
/// the job as JSON; closes after the job ends.
async fn events(caller: ApiCaller, Path(id): Path<i64>, ws: WebSocketUpgrade) -> Result<Response, AppError> {
    // A read-only feed: nothing a client sends needs more than a small frame.
    let ws = ws.max_message_size(4 << 10).max_frame_size(4 << 10);
    caller.require("read")?;
    // Subscribe before the snapshot: no event between the two is missed.
    let rx = caller.jobs.runner.events.subscribe();
    let first = view(&caller, id)?;
    Ok(ws.on_upgrade(move |socket| forward(socket, caller, id, first, rx)))
}

async fn forward(
    mut socket: WebSocket,
    caller: ApiCaller,
    id: i64,
    first: Value,
    mut rx: tokio::sync::broadcast::Receiver<JobEvent>,
) {
    // A status snapshot carries the state under "job", a state event at the top level.
    let ended = |v: &Value| {
        let s = if v["type"] == "status" {
            &v["job"]["state"]
        } else {
            &v["state"]
        };
        matches!(s.as_str(), Some("succeeded" | "failed" | "cancelled"))
    };
    let mut status = json!({"type": "status", "job": first});
    loop {
        let done = ended(&status);
        if socket
            .send(Message::Text(status.to_string().into()))
            .await
            .is_err()
            || done
        {
            break;
        }
        status = loop {
            match rx.recv().await {
                Ok(e) if e.job() == id => break serde_json::to_value(&e).expect("plain data"),
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => match view(&caller, id) {
                    Ok(v) => break json!({"type": "status", "job": v}),
                    Err(_) => return,
                },
                Err(RecvError::Closed) => return,
            }
        };
    }
    let _ = socket.send(Message::Close(None)).await;
}
