//! The HTTP surface, driven in-process through the router (no socket).

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cemiface_engine::device::ComputeDevice;
use cemiface_server::web::router::router;
use cemiface_server::web::state::AppState;
use leptos::prelude::LeptosOptions;
use serde_json::Value;
use tower::ServiceExt;

fn state(assets_dir: std::path::PathBuf) -> AppState {
    let leptos = LeptosOptions::builder()
        .output_name("cemiface")
        .site_root("target/site")
        .build();
    let data = assets_dir.join("data");
    AppState::new(leptos, assets_dir, data, ComputeDevice::cpu())
}

/// A state with a job system in a fresh folder: admin password `hash`, `--secure-cookies` or not.
fn with_jobs(name: &str, hash: Option<String>, secure_cookies: bool) -> AppState {
    use cemiface_server::jobs::{runner::RunnerSettings, webhook::WebhookPolicy, Jobs};
    let dir = common::temp_dir(name);
    let settings = RunnerSettings {
        data_dir: dir.clone(),
        assets_dir: dir.clone(),
        device: "cpu".parse().unwrap(),
        device_label: "cpu".into(),
        slots: 1,
        default_generator: dir.join("none"),
        executor: Default::default(),
    };
    let jobs = Jobs::start(
        settings,
        hash,
        secure_cookies,
        WebhookPolicy::new(false, None).unwrap(),
    )
    .unwrap();
    state(dir).with_jobs(jobs)
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, String) {
    let res = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 22).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn healthz_reports_version_device_and_each_asset_state() {
    let dir = common::temp_dir("healthz");
    let st = state(dir.clone());
    let (code, body) = get(&st, "/healthz").await;
    assert_eq!(code, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["cuda_compiled"], false);
    assert!(v["cpu_threads"].as_u64().unwrap() >= 1);
    // No generator and no job store here: the status says so instead of looking all green.
    assert_eq!(v["generator"], Value::Null);
    assert!(
        v["generator_problem"].as_str().is_some_and(|p| !p.is_empty()),
        "{v}"
    );
    assert_eq!(v["admin_enabled"], false);
    for group in [
        "dlib-resnet",
        "tiny-face-detector",
        "face-landmark-68",
        "dcgan-faces",
        "test-photos",
    ] {
        assert_eq!(v["assets"][group]["present"], false, "{group} in an empty folder");
    }
    let recog = "face-api/face_recognition_model.bin";
    assert_eq!(v["assets"]["dlib-resnet"]["files"][recog], "missing");

    // A truncated download shows up as corrupt on the next request, with no restart.
    std::fs::create_dir_all(dir.join("face-api")).unwrap();
    std::fs::write(dir.join(recog), b"truncated").unwrap();
    let (_, body) = get(&st, "/healthz").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["assets"]["dlib-resnet"]["files"][recog], "corrupt");
    assert_eq!(v["assets"]["dlib-resnet"]["present"], false);
}

#[tokio::test]
async fn healthz_sees_the_installed_assets_when_setup_has_run() {
    let installed = common::repo_root().join("assets");
    if !installed.join("face-api/face_recognition_model.bin").exists() {
        assert!(
            std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
            "assets missing: run scripts/setup.sh --assets-only (or set CEMIFACE_SKIP_MISSING_ASSETS=1 to skip)"
        );
        eprintln!("skipped: scripts/setup.sh has not fetched the assets");
        return;
    }
    let (_, body) = get(&state(installed), "/healthz").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    for (name, g) in v["assets"].as_object().unwrap() {
        assert_eq!(g["present"], true, "asset group {name}: {g}");
    }
}

#[tokio::test]
async fn home_page_is_server_rendered_with_the_hydration_script() {
    let st = state(common::temp_dir("home"));
    let (code, html) = get(&st, "/").await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("controlled difficulty"), "{html}");
    assert!(
        html.contains("/pkg/cemiface.js"),
        "hydration script missing: {html}"
    );
    assert!(html.contains(r#"href="/status""#), "navigation missing");
    assert!(html.contains("id=\"m-slider\""));
}

#[tokio::test]
async fn status_page_renders_the_asset_table_on_the_server() {
    let st = state(common::temp_dir("status-page"));
    let (code, html) = get(&st, "/status").await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("System status"));
    assert!(
        html.contains("dlib-resnet"),
        "resource not resolved during SSR: {html}"
    );
    assert!(html.contains("scripts/setup.sh"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let st = state(common::temp_dir("headers"));
    for uri in ["/", "/healthz", "/status", "/no-such-page", "/api/admin/jobs"] {
        let res = router(st.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        for (name, value) in cemiface_server::web::router::SECURITY_HEADERS {
            assert_eq!(
                res.headers().get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{uri}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_pages_are_404() {
    let st = state(common::temp_dir("404"));
    let (code, _) = get(&st, "/no-such-page").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_status_server_function_answers_with_the_healthz_data() {
    let st = state(common::temp_dir("server-fn"));
    let req = Request::post("/api/system_status")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap();
    let res = router(st).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["device"], "cpu");
    assert!(v["assets"]["dcgan-faces"].is_object());
}

/// `serve::run` on 127.0.0.1 with one-second limits; returns its address and a shutdown trigger.
async fn serve_on_loopback(
    st: AppState,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = cemiface_server::web::router::ConnLimits {
        header_read: std::time::Duration::from_secs(1),
        body_idle: std::time::Duration::from_secs(1),
    };
    let task = tokio::spawn(async move {
        cemiface_server::web::router::run(listener, st, async { drop(rx.await) }, limits)
            .await
            .unwrap();
    });
    (addr, tx, task)
}

/// Reads until the server closes the connection (or 10 s pass); returns what came.
async fn read_until_closed(s: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    match tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_headers_and_stalled_bodies_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let dir = common::temp_dir("timeouts");
    let (addr, stop, task) = serve_on_loopback(state(dir)).await;

    // A complete request is served.
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut ok)
        .await
        .expect("a complete request is answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Half a request line and never the rest: closed after the header timeout (1 s here).
    let t = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let got = read_until_closed(&mut slow)
        .await
        .expect("a slow-header connection is closed");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(!got.contains(" 200 "), "{got}");

    // A body that promises 1000 bytes and stops after 10: the request fails, the socket closes.
    let t = std::time::Instant::now();
    let mut stall = tokio::net::TcpStream::connect(addr).await.unwrap();
    stall
        .write_all(b"POST /api/admin/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"password\"")
        .await
        .unwrap();
    let got = read_until_closed(&mut stall)
        .await
        .expect("a stalled body ends the request");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "ended after {:?}",
        t.elapsed()
    );
    assert!(!got.contains(" 200 "), "{got}");

    // Shutdown waits for nothing that is idle and returns.
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_secure_cookies_every_cookie_is_secure() {
    let (hash, password) = common::admin_hash();
    let st = with_jobs("secure-cookies", Some(hash), true);
    let cookies = |res: &axum::response::Response| -> Vec<String> {
        res.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    // The demo's client cookie, set on a first visit.
    let res = router(st.clone())
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let demo = cookies(&res);
    assert!(
        demo.len() == 1 && demo[0].starts_with("cemiface_client="),
        "{demo:?}"
    );
    // The admin session cookie, set at login.
    let login = Request::post("/api/admin/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(r#"{{"password": "{password}"}}"#)))
        .unwrap();
    let res = router(st.clone()).oneshot(login).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let all: Vec<String> = demo.into_iter().chain(cookies(&res)).collect();
    assert!(all.len() >= 2, "{all:?}");
    for c in &all {
        assert!(
            c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_password_the_admin_api_says_it_is_off_and_how_to_turn_it_on() {
    let st = with_jobs("admin-off", None, false);
    let (code, body) = get(&st, "/api/admin/session").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "admin_disabled");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cemiface hash-password"),
        "{v}"
    );
}
