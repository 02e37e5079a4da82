//! The live demo over a real socket: uploads (HTTP) and the websocket protocol (tokio-tungstenite):
//! frame format and order, cancel, limits, queue positions, isolation between clients, reconnect.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cemiface_app::demo_protocol::{decode_frame, FrameMeta, ServerEvent, FRAME_FINAL, FRAME_PREVIEW};
use cemiface_engine::device::ComputeDevice;
use cemiface_server::demo::{Demo, DemoSettings};
use cemiface_server::web::router::router;
use cemiface_server::web::state::AppState;
use futures_util::{SinkExt, StreamExt};
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// One tiny generator (trained 1 step by `cemiface train-diffusion`) for every test here.
fn generator(assets: &Path) -> PathBuf {
    static GEN: OnceLock<PathBuf> = OnceLock::new();
    GEN.get_or_init(|| common::tiny_generator(&common::temp_dir("demo-gen"), assets))
        .clone()
}

struct Server {
    state: AppState,
    addr: std::net::SocketAddr,
}

async fn server(assets: &Path, tweak: impl FnOnce(&mut DemoSettings)) -> Server {
    let mut settings = DemoSettings {
        heartbeat: Duration::from_millis(300),
        ..Default::default()
    };
    tweak(&mut settings);
    let gen = generator(assets);
    let dev = ComputeDevice::cpu();
    let demo = tokio::task::spawn_blocking({
        let assets = assets.to_path_buf();
        let d = dev.device.clone();
        move || Demo::start(&gen, &assets, &d, settings)
    })
    .await
    .unwrap();
    assert!(demo.model().is_ok(), "{:?}", demo.model().err());
    let leptos = LeptosOptions::builder()
        .output_name("cemiface")
        .site_root("target/site")
        .build();
    let state =
        AppState::new(leptos, assets.to_path_buf(), common::temp_dir("demo-data"), dev).with_demo(demo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let st = state.clone();
    tokio::spawn(async move {
        let forever = std::future::pending::<()>();
        cemiface_server::web::router::run(listener, st, forever, Default::default())
            .await
            .unwrap();
    });
    Server { state, addr }
}

/// The Cookie header of client `who`, its id signed by this server as the server itself would.
fn cookie(s: &Server, who: &str) -> String {
    let id = cemiface_server::demo::client::ClientId(who.to_owned());
    format!("cemiface_client={}", s.state.client_key.sign(&id))
}

/// POST /api/demo/upload as client `who`: (status, JSON body).
async fn upload(s: &Server, who: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::post("/api/demo/upload")
        .header(header::COOKIE, cookie(s, who))
        .body(Body::from(bytes))
        .unwrap();
    let res = router(s.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get_status(s: &Server, who: &str, uri: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(uri)
        .header(header::COOKIE, cookie(s, who))
        .body(Body::empty())
        .unwrap();
    let res = router(s.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    (
        status,
        axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
}

fn photo(assets: &Path, name: &str) -> Vec<u8> {
    std::fs::read(assets.join("face_recognition").join(name)).unwrap()
}

/// What the socket delivered (heartbeats and pings are skipped).
#[derive(Debug)]
enum Got {
    Event(ServerEvent),
    Frame(u32, FrameMeta, usize),
}

struct Ws(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Ws {
    async fn connect(s: &Server, who: &str) -> Self {
        let mut req = format!("ws://{}/api/demo/ws", s.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("cookie", cookie(s, who).parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut ws = Ws(ws);
        match ws.next().await {
            Got::Event(ServerEvent::Hello {
                model: Some(m),
                no_model: None,
                ..
            }) => assert_eq!(m.image_size, 32),
            other => panic!("expected hello, got {other:?}"),
        }
        ws
    }

    async fn send(&mut self, v: Value) {
        self.0.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    async fn submit(&mut self, upload_id: &str, steps: u32, seed: u64) {
        self.send(json!({"type": "submit", "upload_id": upload_id, "m": 0.0, "steps": steps, "seed": seed, "eta": 1.0}))
            .await;
    }

    async fn next(&mut self) -> Got {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.0.next())
                .await
                .expect("no message within 60 s")
                .expect("socket open")
                .unwrap();
            match msg {
                Message::Text(t) => match serde_json::from_str(&t).unwrap() {
                    ServerEvent::Heartbeat { .. } => continue,
                    e => return Got::Event(e),
                },
                Message::Binary(b) => {
                    let (kind, meta, img) = decode_frame(&b).unwrap();
                    assert!(img.starts_with(b"\x89PNG"), "frames carry PNG bytes");
                    let (w, h) = image::load_from_memory(img)
                        .map(|i| (i.width(), i.height()))
                        .unwrap();
                    assert_eq!((w, h), (meta.width, meta.height));
                    return Got::Frame(kind, meta, img.len());
                }
                _ => continue,
            }
        }
    }

    /// Reads until the job's terminal event; returns everything read.
    async fn until_end(&mut self) -> Vec<Got> {
        let mut all = Vec::new();
        loop {
            let g = self.next().await;
            let end = matches!(
                g,
                Got::Event(
                    ServerEvent::Done { .. } | ServerEvent::Cancelled { .. } | ServerEvent::Error { .. }
                )
            );
            all.push(g);
            if end {
                return all;
            }
        }
    }
}

async fn uploaded(s: &Server, assets: &Path, who: &str) -> String {
    let (code, v) = upload(s, who, photo(assets, "obama.jpg")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    v["upload_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_aligned_and_private() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |d| {
        d.max_upload_bytes = 400_000;
        d.max_pixels = 1_100_000;
    })
    .await;
    let (code, v) = upload(&s, A, b"hello, I am not a photo".to_vec()).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("not_an_image"))
    );
    let (code, v) = upload(&s, A, vec![0xFF; 500_000]).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("upload_too_large"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("limit"), "{v}");
    let mut big = Vec::new();
    image::RgbImage::new(1200, 1000)
        .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
        .unwrap();
    let (code, v) = upload(&s, A, big).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_many_pixels")),
        "{v}"
    );
    let mut blank = Vec::new();
    image::RgbImage::from_pixel(300, 300, image::Rgb([128, 128, 128]))
        .write_to(&mut std::io::Cursor::new(&mut blank), image::ImageFormat::Png)
        .unwrap();
    let (code, v) = upload(&s, A, blank).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_face")),
        "{v}"
    );
    let (code, v) = upload(&s, A, photo(&assets, "obama.jpg")[..5000].to_vec()).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("corrupt_image")),
        "{v}"
    );

    // A whole face gets no note; the same face cut at its nose by the photo's edge is accepted
    // with a warning that part of it is outside.
    let (code, v) = upload(&s, A, photo(&assets, "obama.jpg")).await;
    assert_eq!((code, &v["note"]), (StatusCode::OK, &Value::Null), "{v}");
    let whole = image::load_from_memory(&photo(&assets, "obama.jpg"))
        .unwrap()
        .to_rgb8();
    let aligner =
        cemiface_engine::face::align::FaceAligner::load(&assets, &candle_core::Device::Cpu).unwrap();
    let b = aligner.align(&whole, "obama.jpg").unwrap().face;
    let cut =
        image::imageops::crop_imm(&whole, 0, 0, (b.x + 0.55 * b.width) as u32, whole.height()).to_image();
    let mut half = Vec::new();
    cut.write_to(&mut std::io::Cursor::new(&mut half), image::ImageFormat::Jpeg)
        .unwrap();
    let (code, v) = upload(&s, A, half).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert!(
        v["note"]
            .as_str()
            .is_some_and(|n| n.contains("outside the photo")),
        "{v}"
    );

    let id = uploaded(&s, &assets, A).await;
    let url = format!("/api/demo/upload/{id}/crop.png");
    let (code, png) = get_status(&s, A, &url).await;
    assert_eq!(code, StatusCode::OK);
    let crop = image::load_from_memory(&png).unwrap();
    assert_eq!((crop.width(), crop.height()), (112, 112));
    assert_eq!(
        get_status(&s, B, &url).await.0,
        StatusCode::NOT_FOUND,
        "another client's crop"
    );
    let req = Request::delete(format!("/api/demo/upload/{id}"))
        .header(header::COOKIE, cookie(&s, A))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        router(s.state.clone()).oneshot(req).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get_status(&s, A, &url).await.0,
        StatusCode::NOT_FOUND,
        "forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_streams_every_step_in_order_then_the_final_image() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |_| {}).await;
    let id = uploaded(&s, &assets, A).await;
    let mut ws = Ws::connect(&s, A).await;
    ws.submit(&id, 5, 42).await;
    let got = ws.until_end().await;
    let mut seqs = Vec::new();
    let mut steps = Vec::new();
    let mut final_sim = None;
    for g in &got {
        match g {
            Got::Event(ServerEvent::Queued { seq, position, .. }) => {
                assert_eq!(*position, 1);
                seqs.push(*seq);
            }
            Got::Event(ServerEvent::Started { seq, request, .. }) => {
                assert_eq!((request.steps, request.seed), (5, 42));
                seqs.push(*seq);
            }
            Got::Frame(FRAME_PREVIEW, m, _) => {
                assert_eq!((m.steps, m.m.as_slice(), m.similarity.len()), (5, &[0.0][..], 1));
                assert!(m.similarity[0].abs() <= 1.0);
                steps.push(m.step);
                seqs.push(m.seq);
            }
            Got::Frame(FRAME_FINAL, m, _) => {
                assert_eq!((m.step, m.width, m.height), (5, 32, 32));
                final_sim = Some(m.similarity.clone());
                seqs.push(m.seq);
            }
            Got::Event(ServerEvent::Done {
                seq,
                similarity,
                timings,
                ..
            }) => {
                assert_eq!(Some(similarity.clone()), final_sim);
                assert!(timings.sampling_ms > 0 && timings.per_step_ms > 0.0);
                seqs.push(*seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(steps, [1, 2, 3, 4, 5], "every preview, in order");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq numbers count up"
    );

    // The same seed and parameters reproduce the image exactly; another seed does not.
    let final_png = |got: &[Got]| {
        got.iter()
            .find_map(|g| match g {
                Got::Frame(FRAME_FINAL, m, len) => Some((m.similarity.clone(), *len)),
                _ => None,
            })
            .unwrap()
    };
    ws.submit(&id, 5, 42).await;
    assert_eq!(final_png(&ws.until_end().await), final_png(&got));

    // A sweep renders the five targets side by side.
    ws.send(json!({"type": "submit", "upload_id": id, "m": 0.0, "steps": 2, "seed": 42, "eta": 1.0, "sweep": true}))
        .await;
    let sweep = ws.until_end().await;
    let Some(Got::Frame(FRAME_FINAL, m, _)) = sweep.iter().find(|g| matches!(g, Got::Frame(FRAME_FINAL, ..)))
    else {
        panic!("no final frame")
    };
    assert_eq!(
        (m.width, m.height, m.m.len(), m.similarity.len()),
        (160, 32, 5, 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_within_a_step_and_bad_messages_get_typed_errors() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |_| {}).await;
    let id = uploaded(&s, &assets, A).await;
    let mut ws = Ws::connect(&s, A).await;
    ws.submit(&id, 100, 1).await;
    let (job, seen) = loop {
        if let Got::Frame(FRAME_PREVIEW, m, _) = ws.next().await {
            if m.step == 2 {
                break (m.job_id, m.step);
            }
        }
    };
    ws.send(json!({"type": "cancel", "job_id": job})).await;
    let got = ws.until_end().await;
    let Some(Got::Event(ServerEvent::Cancelled { steps_done, .. })) = got.last() else {
        panic!("{got:?}")
    };
    // The step running when the cancel arrives, plus frames already on their way to this client.
    assert!(
        *steps_done >= seen && *steps_done <= seen + 3,
        "stopped at {steps_done} after {seen}"
    );
    assert!(!got.iter().any(|g| matches!(g, Got::Frame(FRAME_FINAL, ..))));

    for (msg, code) in [
        (
            json!({"type": "submit", "upload_id": id, "m": 1.5, "steps": 5, "seed": 1, "eta": 1.0}),
            "invalid_request",
        ),
        (
            json!({"type": "submit", "upload_id": id, "m": 0, "steps": 0, "seed": 1, "eta": 1.0}),
            "invalid_request",
        ),
        (
            json!({"type": "submit", "upload_id": "u999", "m": 0, "steps": 5, "seed": 1, "eta": 1.0}),
            "not_found",
        ),
        (json!({"type": "launch"}), "bad_message"),
        (json!({"type": "cancel", "job_id": 12345}), "not_found"),
    ] {
        ws.send(msg.clone()).await;
        match ws.next().await {
            Got::Event(ServerEvent::Error { code: c, message, .. }) => {
                assert_eq!(c, code, "{msg}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{msg}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_positions_limits_and_isolation_between_clients() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |d| {
        d.queue.max_queue = 1;
        d.queue.jobs_per_minute = 2;
    })
    .await;
    let (ida, idb) = (uploaded(&s, &assets, A).await, uploaded(&s, &assets, B).await);
    let mut a = Ws::connect(&s, A).await;
    let mut b = Ws::connect(&s, B).await;
    a.submit(&ida, 100, 1).await;
    let job_a = loop {
        if let Got::Event(ServerEvent::Started { job_id, .. }) = a.next().await {
            break job_id;
        }
    };
    b.submit(&idb, 3, 1).await;
    let Got::Event(ServerEvent::Queued {
        job_id: job_b,
        position: 1,
        queue_size: 1,
        ..
    }) = b.next().await
    else {
        panic!("b should wait first in line")
    };
    // The queue holds one waiting job: a third submission is refused with a message.
    a.submit(&ida, 3, 2).await;
    loop {
        match a.next().await {
            Got::Event(ServerEvent::Error { code, .. }) => {
                assert_eq!(code, "queue_full");
                break;
            }
            Got::Frame(..) => continue,
            other => panic!("{other:?}"),
        }
    }
    // B can neither see nor cancel A's job, nor use A's upload.
    b.send(json!({"type": "subscribe", "job_id": job_a})).await;
    assert!(matches!(b.next().await, Got::Event(ServerEvent::Error { code, .. }) if code == "not_found"));
    b.send(json!({"type": "cancel", "job_id": job_a})).await;
    assert!(matches!(b.next().await, Got::Event(ServerEvent::Error { code, .. }) if code == "not_found"));
    b.submit(&ida, 3, 1).await;
    assert!(matches!(b.next().await, Got::Event(ServerEvent::Error { code, .. }) if code == "not_found"));

    // A cancels; B moves up and runs, and never sees one of A's frames.
    a.send(json!({"type": "cancel", "job_id": job_a})).await;
    a.until_end().await;
    for g in b.until_end().await {
        match g {
            Got::Frame(_, m, _) => assert_eq!(m.job_id, job_b),
            Got::Event(ServerEvent::Queued { job_id, .. } | ServerEvent::Started { job_id, .. }) => {
                assert_eq!(job_id, job_b);
            }
            Got::Event(ServerEvent::Done { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    // Rate limit of 2 a minute: A has used 1 (the refused one does not count); the next is
    // accepted, the one after refused with a message.
    a.submit(&ida, 1, 3).await;
    assert!(matches!(
        a.until_end().await.last(),
        Some(Got::Event(ServerEvent::Done { .. }))
    ));
    a.submit(&ida, 1, 4).await;
    match a.next().await {
        Got::Event(ServerEvent::Error { code, message, .. }) => {
            assert_eq!(code, "rate_limited");
            assert!(message.contains("per minute"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_page_resubscribes_and_gets_the_last_preview_again() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |_| {}).await;
    let id = uploaded(&s, &assets, A).await;
    let mut ws = Ws::connect(&s, A).await;
    ws.submit(&id, 30, 5).await;
    let (job, seen) = loop {
        if let Got::Frame(FRAME_PREVIEW, m, _) = ws.next().await {
            if m.step == 3 {
                break (m.job_id, m.step);
            }
        }
    };
    drop(ws); // the page reloads
    let mut ws = Ws::connect(&s, A).await;
    ws.send(json!({"type": "subscribe", "job_id": job})).await;
    let got = ws.until_end().await;
    assert!(
        matches!(got[0], Got::Event(ServerEvent::Queued { .. })),
        "state replayed first: {got:?}"
    );
    assert!(matches!(got[1], Got::Event(ServerEvent::Started { .. })));
    let Got::Frame(FRAME_PREVIEW, first, _) = &got[2] else {
        panic!("{got:?}")
    };
    assert!(
        first.step >= seen,
        "replay starts at the latest preview, not step 1"
    );
    assert!(matches!(got.last(), Some(Got::Event(ServerEvent::Done { .. }))));
    // Heartbeats keep arriving on an idle socket.
    let hb = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.0.next().await {
            if let Message::Text(t) = m {
                if t.contains("heartbeat") {
                    return true;
                }
            }
        }
        false
    });
    assert!(hb.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sockets_are_bounded_in_size_echo_and_count() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |d| d.max_sockets_per_client = 3).await;
    // A 1 MiB message closes the socket (1009) instead of being buffered and echoed.
    let mut ws = Ws::connect(&s, B).await;
    let _ = ws.0.send(Message::Text("x".repeat(1 << 20).into())).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.0.next().await {
                None | Some(Err(_) | Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(t))) => assert!(t.len() < 1000, "echoed: {} bytes", t.len()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket stayed open");
    // Over-long values are not echoed whole: an upload id, an unknown message type.
    let mut ws = Ws::connect(&s, B).await;
    for (msg, want) in [
        (
            json!({"type": "submit", "upload_id": "u".repeat(50_000), "m": 0, "steps": 5, "seed": 1, "eta": 1.0}),
            "invalid_request",
        ),
        (
            json!({"type": "submit", "upload_id": "u".repeat(60), "m": 0, "steps": 5, "seed": 1, "eta": 1.0}),
            "not_found",
        ),
        (json!({"type": "x".repeat(50_000)}), "bad_message"),
    ] {
        ws.send(msg).await;
        match ws.next().await {
            Got::Event(ServerEvent::Error { code, message, .. }) => {
                assert_eq!(code, want, "{message}");
                assert!(message.len() < 300, "{} bytes", message.len());
            }
            other => panic!("{other:?}"),
        }
    }
    drop(ws);
    // Sockets per client are capped (429); closing one frees its slot.
    const C: &str = "cccccccccccccccccccccccccccccccc";
    let req = || {
        let mut r = format!("ws://{}/api/demo/ws", s.addr)
            .into_client_request()
            .unwrap();
        r.headers_mut().insert("cookie", cookie(&s, C).parse().unwrap());
        r
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Ws::connect(&s, C).await);
    }
    let err = tokio_tungstenite::connect_async(req()).await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    drop(open.pop());
    for _ in 0..100 {
        if s.state.demo.sockets.held(C) < 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tokio_tungstenite::connect_async(req()).await.is_ok(),
        "a freed slot is reusable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_sockets_are_refused_and_a_server_without_a_model_says_so() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |_| {}).await;
    let mut req = format!("ws://{}/api/demo/ws", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    let leptos = LeptosOptions::builder()
        .output_name("cemiface")
        .site_root("target/site")
        .build();
    let settings = DemoSettings::default();
    let missing = common::temp_dir("no-model").join("models/demo-64");
    let demo = Demo::start(&missing, &assets, &candle_core::Device::Cpu, settings);
    let state = AppState::new(
        leptos,
        assets.clone(),
        common::temp_dir("no-model-data"),
        ComputeDevice::cpu(),
    )
    .with_demo(demo);
    let bare = Server { state, addr: s.addr };
    let (code, v) = upload(&bare, A, photo(&assets, "obama.jpg")).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("No trained generator") && msg.contains("cemiface train-diffusion"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_client_ids_from_one_address_share_its_limits() {
    let Some(assets) = common::assets() else { return };
    let s = server(&assets, |d| {
        d.queue.max_active_per_address = 2;
        d.queue.max_queue = 8;
        d.max_sockets_per_address = 3;
        d.uploads_per_minute_per_address = 4;
    })
    .await;
    // Three "browsers" on 127.0.0.1, each with its own signed id (as a script minting cookies gets).
    let ids: Vec<String> = (0..3).map(|i| format!("{i:0>32}")).collect();
    let mut socks = Vec::new();
    for who in &ids {
        let upload = uploaded(&s, &assets, who).await;
        let mut ws = Ws::connect(&s, who).await;
        ws.submit(&upload, 100, 1).await;
        socks.push(ws);
    }
    // The first two queue or run; the third is refused: the network's share of the queue is used.
    for ws in &mut socks[..2] {
        assert!(matches!(
            ws.next().await,
            Got::Event(ServerEvent::Queued { .. } | ServerEvent::Started { .. })
        ));
    }
    match socks[2].next().await {
        Got::Event(ServerEvent::Error { code, message, .. }) => {
            assert_eq!(code, "rate_limited");
            assert!(message.contains("network"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A fourth socket from the address is refused (429), whatever its id.
    let mut req = format!("ws://{}/api/demo/ws", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", cookie(&s, &format!("{:0>32}", 9)).parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    // Uploads: three made above, one more is accepted, then the address waits, whatever its id.
    let (code, v) = upload(&s, &ids[0], photo(&assets, "obama.jpg")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let (code, v) = upload(&s, &format!("{:0>32}", 8), photo(&assets, "obama.jpg")).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("per minute"),
        "{v}"
    );
    // An unsigned cookie is not taken as the id it names: that client gets a fresh one.
    let req = Request::get("/healthz")
        .header(header::COOKIE, format!("cemiface_client={}", ids[0]))
        .body(Body::empty())
        .unwrap();
    let res = router(s.state.clone()).oneshot(req).await.unwrap();
    let set = res
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        set.is_some_and(|c| !c.contains(&ids[0])),
        "a forged id must be replaced"
    );
}
