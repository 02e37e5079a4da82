//! The Slurm executor against a real one-node cluster (`scripts/slurm.sh up`; `scripts/test.sh`
//! starts it and sets CEMIFACE_REQUIRE_SLURM=1, so there a missing cluster fails these tests;
//! elsewhere they are skipped when `sinfo` finds none). Generations are submitted through the
//! remote API of a real `cemiface serve --executor slurm`, on 127.0.0.1.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

fn cluster() -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| matches!(l.trim(), "idle" | "mixed" | "allocated"))
        });
    if !up {
        assert!(
            std::env::var("CEMIFACE_REQUIRE_SLURM").is_err(),
            "CEMIFACE_REQUIRE_SLURM is set but no Slurm node is up"
        );
        eprintln!("no Slurm cluster (scripts/slurm.sh up): skipped");
    }
    up
}

/// Tasks Slurm still lists under `name` with their state: (`<array>_<index>`, state).
fn squeue(name: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-r", "-n", name, "-o", "%i|%T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect()
}

struct Lab {
    s: common::Served,
    http: Client,
    key: String,
    /// A logged-in admin client and its CSRF token.
    admin: Client,
    csrf: String,
}

impl Lab {
    async fn start(
        data: &std::path::Path,
        assets: &std::path::Path,
        generator: &std::path::Path,
        slurm: bool,
    ) -> Self {
        let (hash, password) = common::admin_hash();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--assets-dir".as_ref(),
            assets.as_os_str(),
            "--generator".as_ref(),
            generator.as_os_str(),
            "--site-root".as_ref(),
            data.as_os_str(),
        ];
        if slurm {
            args.extend(
                [
                    "--executor",
                    "slurm",
                    "--slurm-shards",
                    "4",
                    "--slurm-retries",
                    "2",
                ]
                .map(std::ffi::OsStr::new),
            );
        }
        let s = common::Served::start(&args, &[("CEMIFACE_ADMIN_PASSWORD_HASH", &hash)]);
        let admin = Client::builder().cookie_store(true).build().unwrap();
        let r = admin
            .post(s.url("/api/admin/login"))
            .json(&json!({"password": password}))
            .send()
            .await
            .unwrap();
        let csrf = r.json::<Value>().await.unwrap()["csrf"]
            .as_str()
            .unwrap()
            .to_owned();
        let k: Value = admin
            .post(s.url("/api/admin/keys"))
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": "lab", "rate_per_minute": 100000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            s,
            http: Client::new(),
            key: k["key"].as_str().unwrap().to_owned(),
            admin,
            csrf,
        }
    }

    async fn submit(&self, body: Value) -> i64 {
        let r = self
            .http
            .post(self.s.url("/api/v1/generations"))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    async fn job(&self, id: i64) -> Value {
        self.http
            .get(self.s.url(&format!("/api/v1/generations/{id}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait(&self, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let j = self.job(id).await;
            if done(&j) {
                return j;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {j:#}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn bytes(&self, path: &str) -> Vec<u8> {
        let r = self
            .http
            .get(self.s.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.bytes().await.unwrap().to_vec()
    }

    async fn log(&self, id: i64) -> String {
        let r = self
            .http
            .get(self.s.url(&format!("/api/v1/generations/{id}/log")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        let lines: Value = r.json().await.unwrap();
        lines
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["line"].as_str().unwrap().to_owned() + "\n")
            .collect()
    }
}

fn ended(j: &Value) -> bool {
    !matches!(j["state"].as_str(), Some("queued" | "running"))
}

async fn setup(name: &str) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let assets = common::assets()?;
    if !cluster() {
        return None;
    }
    // Slurm tasks read these paths: absolute.
    let dir = std::path::absolute(common::temp_dir(name)).unwrap();
    let generator = tokio::task::spawn_blocking({
        let (d, a) = (dir.clone(), assets.clone());
        move || common::tiny_generator(&d, &a)
    })
    .await
    .unwrap();
    Some((dir, std::path::absolute(assets).unwrap(), generator))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_shard_generation_on_slurm_equals_a_local_run() {
    let Some((dir, assets, generator)) = setup("slurm-equal").await else {
        return;
    };
    let spec = json!({"identities": 4, "images_per_identity": 3, "m": [0.0, 0.5], "steps": 3, "seed": 5, "rec": true});
    let slurm = Lab::start(&dir.join("slurm-data"), &assets, &generator, true).await;
    let local = Lab::start(&dir.join("local-data"), &assets, &generator, false).await;
    let (a, b) = (slurm.submit(spec.clone()).await, local.submit(spec).await);
    assert_eq!(a, b, "both servers' first job: the same tar prefix");
    let ja = slurm.wait(a, "the Slurm job", ended).await;
    let jb = local.wait(b, "the local job", ended).await;
    assert_eq!(
        (ja["state"].as_str(), jb["state"].as_str()),
        (Some("succeeded"), Some("succeeded")),
        "{ja:#}\n{jb:#}"
    );
    let shards = ja["slurm"].as_array().unwrap();
    assert_eq!(shards.len(), 4, "{ja:#}");
    assert!(
        shards.iter().all(|t| t["state"] == "done" && t["attempt"] == 0),
        "{ja:#}"
    );
    assert!(jb["slurm"].as_array().unwrap().is_empty());
    for path in ["dataset.tar", "train.rec", "train.idx"] {
        let (x, y) = (
            slurm.bytes(&format!("/api/v1/generations/{a}/{path}")).await,
            local.bytes(&format!("/api/v1/generations/{b}/{path}")).await,
        );
        assert!(x == y, "{path} differs: {} vs {} bytes", x.len(), y.len());
    }
    assert!(slurm.log(a).await.contains("submitted Slurm array"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tasks_are_retried_a_restarted_server_reattaches_and_cancel_stops_every_task() {
    let Some((dir, assets, generator)) = setup("slurm-faults").await else {
        return;
    };
    let data = dir.join("data");
    let lab = Lab::start(&data, &assets, &generator, true).await;
    let work = json!({"identities": 4, "images_per_identity": 8, "steps": 10, "seed": 1});

    // 1. A task cancelled from outside is resubmitted; the job still succeeds.
    let id = lab.submit(work.clone()).await;
    let j = lab
        .wait(id, "a running shard", |j| {
            ended(j)
                || j["slurm"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["state"] == "running"))
        })
        .await;
    let victim = j["slurm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["state"] == "running")
        .expect("a running shard")["slurm_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Command::new("scancel").arg(&victim).status().unwrap().success());
    let j = lab.wait(id, "the job with a retried shard", ended).await;
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert!(
        j["slurm"].as_array().unwrap().iter().any(|t| t["attempt"] == 1),
        "the retry shows in the API: {j:#}"
    );
    let log = lab.log(id).await;
    assert!(
        log.contains(&format!("Slurm task {victim} ended CANCELLED; retry 1 of 2")),
        "{log}"
    );

    // 2. The server is killed while shards run; restarted, it follows the same tasks to the end.
    let id = lab.submit(work.clone()).await;
    let j = lab
        .wait(id, "a running shard", |j| {
            ended(j)
                || j["slurm"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["state"] == "running"))
        })
        .await;
    let name = cemiface_server::jobs::slurm_generate::job_name(&data.join("jobs").join(id.to_string()), id);
    let before: Vec<String> = j["slurm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slurm_id"].as_str().unwrap().to_owned())
        .collect();
    let Lab { s, key, .. } = lab;
    s.kill();
    let lab = Lab {
        key,
        ..Lab::start(&data, &assets, &generator, true).await
    };
    let j = lab.wait(id, "the re-attached job", ended).await;
    assert_eq!(j["state"], "succeeded", "{j:#}");
    let after: Vec<String> = j["slurm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slurm_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(before, after, "nothing was submitted again");
    let arrays: std::collections::BTreeSet<String> = squeue(&name)
        .into_iter()
        .map(|(t, _)| t.split('_').next().unwrap().to_owned())
        .collect();
    assert_eq!(arrays.len(), 1, "one sbatch for the job: {arrays:?}");
    assert!(lab
        .log(id)
        .await
        .contains("following this job's Slurm tasks again"));

    // 3. A cancel from the panel cancels every task.
    let id = lab.submit(work).await;
    lab.wait(id, "submitted shards", |j| {
        ended(j) || j["slurm"].as_array().is_some_and(|t| t.len() == 4)
    })
    .await;
    let name = cemiface_server::jobs::slurm_generate::job_name(&data.join("jobs").join(id.to_string()), id);
    // (the panel's Cancel button: the admin API)
    let r = lab
        .admin
        .post(lab.s.url(&format!("/api/admin/jobs/{id}/cancel")))
        .header("x-csrf-token", &lab.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let j = lab.wait(id, "the cancelled job", ended).await;
    assert_eq!(j["state"], "cancelled", "{j:#}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live: Vec<_> = squeue(&name)
            .into_iter()
            .filter(|(_, s)| matches!(s.as_str(), "PENDING" | "RUNNING" | "CONFIGURING"))
            .collect();
        if live.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "tasks left after the cancel: {live:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_job_runs_as_one_slurm_job_with_its_curves_and_checkpoints() {
    let Some((dir, assets, generator)) = setup("slurm-train").await else {
        return;
    };
    let lab = Lab::start(&dir.join("data"), &assets, &generator, true).await;
    let spec = json!({"kind": "train-diffusion", "config": "tiny-32", "steps": 4, "checkpoint_every": 2});
    let r = lab
        .admin
        .post(lab.s.url("/api/admin/jobs"))
        .header("x-csrf-token", &lab.csrf)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let get = |path: String| {
        let lab = &lab;
        async move {
            lab.admin
                .get(lab.s.url(&path))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Pause is refused with a reason; cancel and resume are what a Slurm job offers.
    let r = lab
        .admin
        .post(lab.s.url(&format!("/api/admin/jobs/{id}/pause")))
        .header("x-csrf-token", &lab.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let deadline = Instant::now() + Duration::from_secs(600);
    let j = loop {
        let j = get(format!("/api/admin/jobs/{id}")).await;
        if ended(&j) {
            break j;
        }
        assert!(Instant::now() < deadline, "{j:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(
        (j["progress"]["done"].as_u64(), j["progress"]["total"].as_u64()),
        (Some(4), Some(4)),
        "{j:#}"
    );
    let tasks = j["slurm"].as_array().unwrap();
    assert!(tasks.len() == 1 && tasks[0]["state"] == "done", "{j:#}");
    let logs = j["logs"].to_string();
    assert!(logs.contains("submitted Slurm job"), "{logs}");
    // The task's metrics.jsonl became the job's curves; its checkpoints, artifacts.
    let m = get(format!("/api/admin/jobs/{id}/metrics")).await;
    assert_eq!(m["loss"].as_array().map(Vec::len), Some(4), "{m:#}");
    let steps: Vec<u64> = j["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "checkpoint")
        .filter_map(|a| a["step"].as_u64())
        .collect();
    assert!(steps.contains(&2) && steps.contains(&4), "{:#}", j["artifacts"]);
}
