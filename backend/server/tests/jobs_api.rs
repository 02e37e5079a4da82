//! The remote dataset-generation API and the admin API against a real `cemiface serve` on
//! 127.0.0.1:0 with a real HTTP client: keys, scopes, 401/403/404/422/429, submit → events →
//! download (tar, .rec/.idx), the signed webhook, and the OpenAPI document.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A logged-in admin client: (client with the session cookie, CSRF token).
async fn admin(s: &common::Served, password: &str) -> (Client, String) {
    let c = Client::builder().cookie_store(true).build().unwrap();
    let r = c
        .post(s.url("/api/admin/login"))
        .json(&json!({"password": password}))
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

async fn new_key(s: &common::Served, c: &Client, csrf: &str, body: Value) -> Value {
    let r = c
        .post(s.url("/api/admin/keys"))
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

async fn error_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (status, r.json::<Value>().await.unwrap()["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_api_end_to_end() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("jobs-api");
    let generator = tokio::task::spawn_blocking({
        let (d, a) = (dir.clone(), assets.clone());
        move || common::tiny_generator(&d, &a)
    })
    .await
    .unwrap();
    let s = common::serve_with_admin(&dir.join("data"), &assets, &generator);
    let (_, password) = common::admin_hash();
    let anon = Client::new();

    // Admin login: a wrong password is 401; admin routes need the session, writes the CSRF token.
    let r = anon
        .post(s.url("/api/admin/login"))
        .json(&json!({"password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    let r = anon.get(s.url("/api/admin/jobs")).send().await.unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    let (adm, csrf) = admin(&s, password).await;
    // The configured PBKDF2 hash was upgraded to Argon2id at that login; the next logins use it.
    let store = cemiface_server::jobs::store::Store::open(&dir.join("data/cemiface.db")).unwrap();
    let configured = cemiface_server::web::auth::token_hash(&common::admin_hash().0);
    let upgraded = store
        .upgraded_password(&configured)
        .unwrap()
        .expect("upgraded at the first login");
    assert!(
        upgraded.starts_with("$argon2id$")
            && cemiface_server::web::auth::verify_password(&upgraded, password)
    );
    let r = anon
        .post(s.url("/api/admin/login"))
        .json(&json!({"password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    let _ = admin(&s, password).await;
    assert_eq!(
        store.upgraded_password(&configured).unwrap().as_deref(),
        Some(upgraded.as_str()),
        "upgraded once"
    );
    // Failed logins count per address: ten wrong passwords from 127.0.0.2 block that address (even
    // with the right password, for a minute); the admin on 127.0.0.1 still logs in.
    let other_addr = Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    for _ in 0..10 {
        let r = other_addr
            .post(s.url("/api/admin/login"))
            .json(&json!({"password": "guess"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    }
    for pw in ["guess", password] {
        let r = other_addr
            .post(s.url("/api/admin/login"))
            .json(&json!({"password": pw}))
            .send()
            .await
            .unwrap();
        let (code, e) = error_of(r).await;
        assert_eq!(
            (code, e["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
            "{e}"
        );
    }
    let _ = admin(&s, password).await;
    let r = adm
        .post(s.url("/api/admin/keys"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (StatusCode::FORBIDDEN, error_of_csrf()));
    let key = new_key(
        &s,
        &adm,
        &csrf,
        json!({"name": "lab", "scopes": ["generate", "read"]}),
    )
    .await;
    let token = key["key"].as_str().unwrap().to_owned();
    let secret = key["webhook_secret"].as_str().unwrap().to_owned();
    let listed = adm
        .get(s.url("/api/admin/keys"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(&token) && !listed.contains(&secret),
        "keys are shown once: {listed}"
    );
    let reader = new_key(&s, &adm, &csrf, json!({"name": "ro", "scopes": ["read"]})).await;
    let other = new_key(&s, &adm, &csrf, json!({"name": "other"})).await;

    // Credentials: none, wrong, revoked → 401; a read-only key cannot submit → 403.
    let tiny = json!({"identities": 2, "images_per_identity": 2, "m": [0.0, 0.5], "steps": 2, "rec": true});
    let submit = |t: Option<&str>, body: &Value| {
        let mut rq = anon.post(s.url("/api/v1/generations")).json(body);
        if let Some(t) = t {
            rq = rq.bearer_auth(t);
        }
        rq.send()
    };
    let (st, e) = error_of(submit(None, &tiny).await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (st, _) = error_of(submit(Some("cf_wrong"), &tiny).await.unwrap()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, e) = error_of(submit(reader["key"].as_str(), &tiny).await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    // Invalid requests: 422 with every bad field named.
    let bad =
        json!({"identities": 0, "images_per_identity": 2, "m": [2.0], "steps": 2, "webhook_url": "ftp://x/"});
    let (st, e) = error_of(submit(Some(&token), &bad).await.unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["fields"][0]["field"], "webhook_url", "{e}");
    let bad = json!({"identities": 0, "images_per_identity": 2, "m": [2.0], "steps": 2});
    let (st, e) = error_of(submit(Some(&token), &bad).await.unwrap()).await;
    let fields: Vec<&str> = e["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        (st, fields),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["identities", "m[0]"])
    );
    let (st, e) = error_of(
        submit(
            Some(&token),
            &json!({"identities": 1, "images_per_identity": 1, "size": 9}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (st, e["fields"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("size"))
    );

    // The admin pages' event socket: the session cookie opens it; no cookie is 401, another
    // origin 403. It carries every job's events as the shared protocol's JobEvent.
    let admin_ws = |cookie: Option<String>, origin: Option<&str>| {
        let mut req = format!("ws://{}/api/admin/events", s.addr)
            .into_client_request()
            .unwrap();
        if let Some(c) = cookie {
            req.headers_mut().insert("cookie", c.parse().unwrap());
        }
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    let login = anon
        .post(s.url("/api/admin/login"))
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    let session = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let refused = |e: tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        e => panic!("{e}"),
    };
    assert_eq!(refused(admin_ws(None, None).await.unwrap_err()), 401);
    assert_eq!(
        refused(
            admin_ws(Some(session.clone()), Some("http://elsewhere.example"))
                .await
                .unwrap_err()
        ),
        403
    );
    let (mut admin_events, _) = admin_ws(Some(session), None).await.unwrap();

    // Submit with a webhook; follow the events websocket to the end.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/done", hook.local_addr().unwrap());
    let mut body = tiny.clone();
    body["webhook_url"] = json!(hook_url);
    let r = submit(Some(&token), &body).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_i64().unwrap();
    assert!(
        matches!(job["state"].as_str(), Some("queued" | "running")),
        "{job}"
    );
    let mut req = format!("ws://{}/api/v1/generations/{id}/events", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut progress = Vec::new();
    let mut last_state = String::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while let Some(m) = tokio::time::timeout_at(deadline.into(), ws.next())
        .await
        .expect("events within 300 s")
    {
        let Message::Text(t) = m.unwrap() else { continue };
        let e: Value = serde_json::from_str(&t).unwrap();
        match e["type"].as_str().unwrap() {
            "progress" => progress.push((e["done"].as_u64().unwrap(), e["total"].as_u64().unwrap())),
            "state" => last_state = e["state"].as_str().unwrap().to_owned(),
            "status" => assert_eq!(e["job"]["id"], id),
            _ => {}
        }
    }
    assert_eq!(last_state, "succeeded");
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "{progress:?}");
    assert_eq!(progress.last(), Some(&(4, 4)));
    // The admin socket saw the same job run: its progress to the end, then its final state.
    use cemiface_app::admin_protocol::{JobEvent, JobState};
    let mut seen = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), admin_events.next()).await {
        if let Message::Text(t) = m.unwrap() {
            let e: JobEvent = serde_json::from_str(&t).expect("a JobEvent");
            if e.job() == id {
                seen.push(e);
            }
        }
    }
    assert!(
        seen.iter().any(|e| matches!(
            e,
            JobEvent::Progress {
                done: 4,
                total: 4,
                ..
            }
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(
            e,
            JobEvent::State {
                state: JobState::Succeeded,
                ..
            }
        )),
        "{seen:?}"
    );

    let st: Value = anon
        .get(s.url(&format!("/api/v1/generations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (st["state"].as_str(), st["progress"]["fraction"].as_f64()),
        (Some("succeeded"), Some(1.0))
    );
    // Another key sees nothing of it (404, not 403), and its list is empty.
    let r = anon
        .get(s.url(&format!("/api/v1/generations/{id}")))
        .bearer_auth(other["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (code, e) = error_of(r).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(!e.to_string().contains("succeeded"));
    let theirs: Value = anon
        .get(s.url("/api/v1/generations"))
        .bearer_auth(other["key"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));

    // Artifacts, the grid, the tar and the RecordIO pair.
    let arts: Value = anon
        .get(s.url(&format!("/api/v1/generations/{id}/artifacts")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = arts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for k in ["dataset", "sample-grid", "recordio", "report"] {
        assert!(kinds.contains(&k), "{arts}");
    }
    let grid_url = arts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "sample-grid")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let grid = anon
        .get(s.url(&grid_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&grid[..8], b"\x89PNG\r\n\x1a\n");
    let r = anon
        .get(s.url(&format!("/api/v1/generations/{id}/files/config.toml")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "only recorded artifacts are served"
    );
    // A symbolic link planted in the job's folder (to a file or to a folder) is never followed.
    let job_folder = dir.join(format!("data/jobs/{id}"));
    std::fs::write(dir.join("secret.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), job_folder.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&dir, job_folder.join("up")).unwrap();
    for f in ["leak.txt", "up/secret.txt"] {
        let r = adm
            .get(s.url(&format!("/api/admin/jobs/{id}/files/{f}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{f}");
    }

    let r = anon
        .get(s.url(&format!("/api/v1/generations/{id}/dataset.tar")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let len: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let tar_bytes = r.bytes().await.unwrap();
    assert_eq!(tar_bytes.len(), len);
    let tar_path = dir.join("set.tar");
    std::fs::write(&tar_path, &tar_bytes).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar cannot read it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("cemiface-job-{id}/");
    assert!(names.lines().all(|n| n.starts_with(&prefix)), "{names}");
    assert!(
        names.contains("manifest.jsonl") && names.contains("sample_grid.png") && !names.contains("train.rec")
    );
    let out = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&tar_path)
        .arg(format!("{prefix}manifest.jsonl"))
        .output()
        .unwrap();
    let manifest = String::from_utf8(out.stdout).unwrap();
    let generated: Vec<Value> = manifest
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| !e["m"].is_null())
        .collect();
    assert_eq!(generated.len(), 4);
    for e in &generated {
        assert!(
            names.contains(&format!("{prefix}{}", e["file"].as_str().unwrap())),
            "{e}"
        );
    }
    let rec = anon
        .get(s.url(&format!("/api/v1/generations/{id}/train.rec")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&rec[..4], &0xced7230a_u32.to_le_bytes(), "RecordIO magic");
    let idx = anon
        .get(s.url(&format!("/api/v1/generations/{id}/train.idx")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(idx.lines().count() > 4, "{idx}");

    // The webhook arrived, signed with the key's secret.
    hook.set_nonblocking(false).unwrap();
    let (mut conn, _) = hook.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("}") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&buf[..n]);
    }
    std::io::Write::write_all(&mut conn, b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let sig = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-cemiface-signature: ")
                .map(str::to_owned)
        })
        .unwrap();
    assert_eq!(sig, cemiface_server::web::auth::sign(&secret, body.as_bytes()));
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (payload["id"].as_i64(), payload["state"].as_str()),
        (Some(id), Some("succeeded"))
    );

    // Cancelling a finished job is a conflict; the admin sees the job too.
    let r = anon
        .delete(s.url(&format!("/api/v1/generations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::CONFLICT);
    let all: Value = adm
        .get(s.url("/api/admin/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(all.as_array().unwrap().iter().any(|j| j["id"] == id));

    // The admin chains the rest of the pipeline as jobs: train-fr on this data set, then eval.
    let admin_job = |spec: Value| {
        let (adm, csrf, s) = (&adm, &csrf, &s);
        async move {
            let r = adm
                .post(s.url("/api/admin/jobs"))
                .header("x-csrf-token", csrf)
                .json(&spec)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let j: Value = adm
                    .get(s.url(&format!("/api/admin/jobs/{id}")))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if !matches!(j["state"].as_str(), Some("queued" | "running")) {
                    return j;
                }
                assert!(Instant::now() < deadline, "{j:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let fr = admin_job(json!({"kind": "train-fr", "config": "fr-tiny", "data": format!("job:{id}"), "steps": 2, "batch_size": 8})).await;
    assert_eq!(fr["state"], "succeeded", "{fr:#}");
    let images: Vec<Vec<u8>> = generated
        .iter()
        .map(|e| {
            std::fs::read(
                dir.join("data/jobs")
                    .join(id.to_string())
                    .join("dataset")
                    .join(e["file"].as_str().unwrap()),
            )
            .unwrap()
        })
        .collect();
    let same_id = |a: usize, b: usize| generated[a]["identity"] == generated[b]["identity"];
    let mut set = cemiface_engine::data::insightface_bin::PairSet {
        images: vec![],
        same: vec![],
    };
    for k in 0..10 {
        let (a, b) = (k % 4, (k / 4 + k + 1) % 4);
        set.images.extend([images[a].clone(), images[b].clone()]);
        set.same.push(same_id(a, b));
    }
    let bin = dir.join("pairs.bin");
    cemiface_engine::data::insightface_bin::write(&bin, &set).unwrap();
    let ev =
        admin_job(json!({"kind": "eval", "checkpoint": format!("job:{}", fr["id"]), "sets": [bin]})).await;
    assert_eq!(ev["state"], "succeeded", "{ev:#}");
    let report: Value = adm
        .get(s.url(&format!("/api/admin/jobs/{}/files/report.json", ev["id"])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        (0.0..=1.0).contains(&report["sets"]["pairs"]["accuracy"].as_f64().unwrap()),
        "{report}"
    );
    let wrong = adm
        .post(s.url("/api/admin/jobs"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"kind": "eval", "checkpoint": format!("job:{id}"), "sets": ["x.bin"]}))
        .send()
        .await
        .unwrap();
    let (st, e) = error_of(wrong).await;
    assert_eq!(
        (st, e["fields"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("checkpoint")),
        "a generate job is no checkpoint"
    );

    // Quotas and rate limits per key.
    let small = new_key(
        &s,
        &adm,
        &csrf,
        json!({"name": "small", "quota_images": 3, "rate_per_minute": 3}),
    )
    .await;
    let k = small["key"].as_str().unwrap();
    let (st, e) = error_of(submit(Some(k), &tiny).await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded"))
    );
    for _ in 0..2 {
        anon.get(s.url("/api/v1/generations"))
            .bearer_auth(k)
            .send()
            .await
            .unwrap();
    }
    let (st, e) = error_of(
        anon.get(s.url("/api/v1/generations"))
            .bearer_auth(k)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    // Caps per key: identities per job (422 naming the field), jobs at once (429 until one ends).
    let capped = new_key(
        &s,
        &adm,
        &csrf,
        json!({"name": "capped", "max_active_jobs": 1, "max_identities": 3, "rate_per_minute": 100000}),
    )
    .await;
    let k = capped["key"].as_str().unwrap();
    let (st, e) = error_of(
        submit(Some(k), &json!({"identities": 4, "images_per_identity": 1}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, e["fields"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("identities")),
        "{e}"
    );
    let long = json!({"identities": 3, "images_per_identity": 10, "steps": 10});
    let r = submit(Some(k), &long).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let first = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let (st, e) = error_of(submit(Some(k), &tiny).await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_jobs")),
        "{e}"
    );
    // Poll a job of this key until `done` says so.
    let wait_for = |id: i64, what: &'static str, done: fn(&Value) -> bool| {
        let (anon, s) = (&anon, &s);
        async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let j: Value = anon
                    .get(s.url(&format!("/api/v1/generations/{id}")))
                    .bearer_auth(k)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if done(&j) {
                    return j;
                }
                assert!(Instant::now() < deadline, "waiting for {what}: {j:#}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Cancel it once its first identity (10 images) is finished.
    let j = wait_for(first, "one identity", |j| {
        j["progress"]["done"].as_u64() >= Some(10) || j["state"] != "running" && j["state"] != "queued"
    })
    .await;
    assert_eq!(j["state"], "running", "{j:#}");
    let r = anon
        .delete(s.url(&format!("/api/v1/generations/{first}")))
        .bearer_auth(k)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    wait_for(first, "cancelled", |j| j["state"] == "cancelled").await;
    let r = submit(Some(k), &tiny).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "the cancelled job freed the key's slot"
    );
    let second = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    // API resume: refused while the key's slot is taken, then it goes on from the finished identity,
    // counting the whole job (10 of 30 at once, not 0 of 20).
    let resume = |id: i64| {
        anon.post(s.url(&format!("/api/v1/generations/{id}/resume")))
            .bearer_auth(k)
            .send()
    };
    let (st, e) = error_of(resume(first).await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_jobs")),
        "{e}"
    );
    wait_for(second, "the tiny job", |j| j["state"] == "succeeded").await;
    assert_eq!(resume(first).await.unwrap().status(), StatusCode::ACCEPTED);
    let j = wait_for(first, "progress of the resumed run", |j| j["state"] != "queued").await;
    assert!(j["progress"]["done"].as_u64().unwrap() >= 10, "{j:#}");
    let j = wait_for(first, "the resumed job", |j| {
        !matches!(j["state"].as_str(), Some("queued" | "running"))
    })
    .await;
    let p = &j["progress"];
    assert_eq!(
        (j["state"].as_str(), p["done"].as_u64(), p["total"].as_u64()),
        (Some("succeeded"), Some(30), Some(30)),
        "{j:#}"
    );
    let (st, _) = error_of(resume(first).await.unwrap()).await;
    assert_eq!(st, StatusCode::CONFLICT, "a finished job does not resume");
    // A revoked key is refused.
    let r = adm
        .delete(s.url(&format!("/api/admin/keys/{}", other["id"])))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = anon
        .get(s.url("/api/v1/generations"))
        .bearer_auth(other["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);

    // The OpenAPI document describes every route of the remote API.
    let doc: Value = anon
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/api/v1/generations",
        "/api/v1/generations/{id}",
        "/api/v1/generations/{id}/events",
        "/api/v1/generations/{id}/artifacts",
        "/api/v1/generations/{id}/dataset.tar",
        "/api/v1/generations/{id}/train.rec",
        "/api/v1/generations/{id}/train.idx",
        "/api/v1/generations/{id}/resume",
        "/api/v1/generations/{id}/log",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} undocumented");
    }
}

fn error_of_csrf() -> Value {
    json!({"code": "csrf", "message": "missing or wrong X-CSRF-Token header"})
}
