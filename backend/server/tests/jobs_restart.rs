//! Durability: a training job survives a SIGKILL of the server. After the restart it shows as
//! interrupted, resume continues from its last checkpoint, and no artifact or metric is lost or
//! duplicated. Pause checkpoints first and resume continues from there.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

async fn login(s: &common::Served) -> (Client, String) {
    let c = Client::builder().cookie_store(true).build().unwrap();
    let r = c
        .post(s.url("/api/admin/login"))
        .json(&json!({"password": common::admin_hash().1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csrf = r.json::<Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    (c, csrf)
}

async fn job(s: &common::Served, c: &Client, id: i64) -> Value {
    c.get(s.url(&format!("/api/admin/jobs/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the job until `pred` holds (panics after `secs`).
async fn wait_for(
    s: &common::Served,
    c: &Client,
    id: i64,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = job(s, c, id).await;
        if pred(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "timed out; job is {j:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn checkpoints(j: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = j["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "checkpoint")
        .map(|a| a["step"].as_u64().unwrap())
        .collect();
    v.sort();
    v
}

async fn action(s: &common::Served, c: &Client, csrf: &str, id: i64, what: &str) -> StatusCode {
    c.post(s.url(&format!("/api/admin/jobs/{id}/{what}")))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_survives_sigkill_and_pause() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("jobs-restart");
    let data = dir.join("data");
    let s = common::serve_with_admin(&data, &assets, &data.join("none"));
    let (c, csrf) = login(&s).await;
    let spec = json!({"kind": "train-diffusion", "config": "tiny-32", "steps": 12, "checkpoint_every": 3, "sample_grid": false});
    let r = c
        .post(s.url("/api/admin/jobs"))
        .header("x-csrf-token", &csrf)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // Kill the server once a checkpoint exists and the run has gone past it.
    let before = wait_for(&s, &c, id, 240, |j| {
        checkpoints(j)
            .first()
            .is_some_and(|&c| j["progress"]["done"].as_u64().unwrap() > c)
    })
    .await;
    s.kill();
    let last_ckpt = *checkpoints(&before).last().unwrap();

    let s = common::serve_with_admin(&data, &assets, &data.join("none"));
    let (c, csrf) = login(&s).await;
    let j = job(&s, &c, id).await;
    assert_eq!(j["state"], "interrupted", "{j:#}");
    let on_disk = checkpoints(&j);
    assert!(
        on_disk.starts_with(&checkpoints(&before)),
        "lost artifacts: {on_disk:?} vs {:?}",
        checkpoints(&before)
    );
    let resumed_from = *on_disk.last().unwrap();
    assert!(resumed_from >= last_ckpt);

    // Resume; pause once it is past the next step; resume again to the end.
    assert_eq!(action(&s, &c, &csrf, id, "resume").await, StatusCode::ACCEPTED);
    wait_for(&s, &c, id, 240, |j| {
        j["state"] == "running" && j["progress"]["done"].as_u64().unwrap() > resumed_from
    })
    .await;
    assert_eq!(action(&s, &c, &csrf, id, "pause").await, StatusCode::ACCEPTED);
    let paused = wait_for(&s, &c, id, 240, |j| j["state"] != "running").await;
    assert_eq!(paused["state"], "paused", "{paused:#}");
    let paused_at = paused["progress"]["done"].as_u64().unwrap();
    assert!(paused_at > resumed_from, "{paused:#}");
    assert_eq!(
        checkpoints(&paused).last(),
        Some(&paused_at),
        "pause writes a checkpoint at its step"
    );
    assert_eq!(action(&s, &c, &csrf, id, "pause").await, StatusCode::CONFLICT);
    assert_eq!(action(&s, &c, &csrf, id, "resume").await, StatusCode::ACCEPTED);
    let done = wait_for(&s, &c, id, 300, |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");

    // Every checkpoint once, each on disk; every step's loss once; the logs show both resumes.
    let mut expected: Vec<u64> = vec![3, 6, 9, 12];
    expected.extend(on_disk.iter().chain([&paused_at]).copied());
    expected.sort();
    expected.dedup();
    assert_eq!(checkpoints(&done), expected);
    for a in done["artifacts"].as_array().unwrap() {
        assert!(
            data.join("jobs")
                .join(id.to_string())
                .join(a["path"].as_str().unwrap())
                .exists(),
            "{a}"
        );
    }
    let metrics: Value = c
        .get(s.url(&format!("/api/admin/jobs/{id}/metrics")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let steps: Vec<u64> = metrics["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>());
    assert!(metrics["lr"].is_array() && metrics["sim_error"].is_array());
    let logs: Vec<String> = done["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        logs.iter().any(|l| l.contains(&format!("(step {resumed_from})"))),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.contains(&format!("(step {paused_at})"))),
        "{logs:?}"
    );
    let r = c
        .post(s.url(&format!("/api/admin/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "writes without the CSRF token are refused"
    );

    // A checkpoint downloads as a tar of its folder, loadable after unpacking.
    let r = c
        .get(s.url(&format!("/api/admin/jobs/{id}/checkpoints/12")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let disposition = r.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(
        disposition.contains(&format!("cemiface-job-{id}-step12.tar")),
        "{disposition}"
    );
    let bytes = r.bytes().await.unwrap();
    let names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&format!("cemiface-job-{id}-step12/state.json")),
        "{names:?}"
    );
    let r = c
        .get(s.url(&format!("/api/admin/jobs/{id}/checkpoints/13")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_within_a_step() {
    let Some(assets) = common::assets() else { return };
    let data = common::temp_dir("jobs-cancel").join("data");
    let s = common::serve_with_admin(&data, &assets, &data.join("none"));
    let (c, csrf) = login(&s).await;
    let spec = json!({"kind": "train-diffusion", "config": "tiny-32", "steps": 100000, "checkpoint_every": 100000, "sample_grid": false});
    let r = c
        .post(s.url("/api/admin/jobs"))
        .header("x-csrf-token", &csrf)
        .json(&spec)
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    wait_for(&s, &c, id, 240, |j| {
        j["state"] == "running" && j["progress"]["done"].as_u64().unwrap() >= 2
    })
    .await;
    // One slot on the device: a second job waits at the head of the queue.
    let grid_spec = json!({"kind": "train-diffusion", "config": "tiny-32", "steps": 2, "checkpoint_every": 1, "sample_grid": true});
    let r = c
        .post(s.url("/api/admin/jobs"))
        .header("x-csrf-token", &csrf)
        .json(&grid_spec)
        .send()
        .await
        .unwrap();
    let second = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let waiting = job(&s, &c, second).await;
    assert_eq!(
        (waiting["state"].as_str(), waiting["queue_position"].as_u64()),
        (Some("queued"), Some(0)),
        "{waiting:#}"
    );
    let system: Value = c
        .get(s.url("/api/admin/system"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            system["queue"]["running"].as_u64(),
            system["queue"]["queued"].as_u64()
        ),
        (Some(1), Some(1)),
        "{system:#}"
    );

    let asked = job(&s, &c, id).await["progress"]["done"].as_u64().unwrap();
    assert_eq!(action(&s, &c, &csrf, id, "cancel").await, StatusCode::ACCEPTED);
    let j = wait_for(&s, &c, id, 60, |j| j["state"] != "running").await;
    assert_eq!(j["state"], "cancelled", "{j:#}");
    let stopped_at = j["progress"]["done"].as_u64().unwrap();
    // The step in flight when the cancel arrived may finish (plus one the poll did not see yet).
    assert!(
        stopped_at <= asked + 2,
        "asked at step {asked}, stopped at {stopped_at}"
    );
    assert_eq!(
        checkpoints(&j),
        Vec::<u64>::new(),
        "a cancel writes no checkpoint"
    );
    assert_eq!(action(&s, &c, &csrf, id, "cancel").await, StatusCode::CONFLICT);

    // The freed slot runs the second job, which draws a sample grid at every checkpoint.
    let done = wait_for(&s, &c, second, 240, |j| {
        !matches!(j["state"].as_str(), Some("queued" | "running"))
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let grids: Vec<(u64, String)> = done["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "sample-grid")
        .map(|a| {
            (
                a["step"].as_u64().unwrap(),
                a["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(grids.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 2], "{done:#}");
    let png = c
        .get(s.url(&format!("/api/admin/jobs/{second}/files/{}", grids[1].1)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let img = image::load_from_memory(&png).unwrap();
    // Four identities (rows) × the inquiry and m = -1, 0, 1 (columns), 32 px each.
    assert_eq!((img.width(), img.height()), (4 * 32, 4 * 32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_generation_during_its_inquiry_selection() {
    let Some(assets) = common::assets() else { return };
    let data = common::temp_dir("jobs-cancel-selection").join("data");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/latent-dcgan");
    let s = common::serve_with_admin(&data, &assets, &shipped);
    let (c, csrf) = login(&s).await;
    // 100 000 unique DCGAN identities: hours of selection before the first image.
    let spec = json!({"kind": "generate", "identities": 100000, "images_per_identity": 1});
    let r = c
        .post(s.url("/api/admin/jobs"))
        .header("x-csrf-token", &csrf)
        .json(&spec)
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    wait_for(&s, &c, id, 120, |j| j["state"] == "running").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        job(&s, &c, id).await["progress"]["done"].as_u64().unwrap_or(0),
        0,
        "still selecting"
    );
    assert_eq!(action(&s, &c, &csrf, id, "cancel").await, StatusCode::ACCEPTED);
    let j = wait_for(&s, &c, id, 30, |j| j["state"] != "running").await;
    assert_eq!(j["state"], "cancelled", "{j:#}");
    assert!(
        !data.join(format!("jobs/{id}/dataset/inquiries.json")).exists(),
        "a partial selection is not kept"
    );
}
