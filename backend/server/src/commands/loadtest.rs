//! `cemiface loadtest`: a bounded soak of a server on this machine. Four phases, each with a fixed
//! amount of work, while `/healthz` is probed every 50 ms and the server's resident memory is
//! sampled every 100 ms:
//!
//! | phase    | load                                                                          |
//! |----------|-------------------------------------------------------------------------------|
//! | viewers  | `--viewers` demo websockets held open `--seconds`, one of them streaming a job |
//! | hostile  | `--hostile` sockets sending 10 MiB messages, reconnecting, for `--seconds`     |
//! | bombs    | `--bombs` concurrent uploads of a 5000×5000 16-bit RGBA PNG (≈ 200 KB, zeros)  |
//! | uploads  | `--uploads` photo uploads, `--concurrency` at a time                           |
//!
//! Prints a table (peak and settled RSS, health-check p50/p99) and exits 1 when a phase passes
//! `--max-rss-mb` or `--max-p99-ms`. Only loopback addresses are accepted: this never sends a
//! packet off the machine. Without `--url` it starts `cemiface serve` itself on 127.0.0.1, with
//! the per-address limits opened (every client of a soak shares one address).

pub mod server;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::commands::AssetsDirArg;

/// Options of `cemiface loadtest`.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    /// A running server (http://127.0.0.1:PORT or http://localhost:PORT); needs --pid. Without it
    /// a server is started for the test and stopped after it.
    #[arg(long, requires = "pid")]
    pub url: Option<String>,
    /// Process id of the --url server, for its memory.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Generator of the started server.
    #[arg(long, default_value = "models/latent-dcgan")]
    pub generator: PathBuf,
    #[command(flatten)]
    pub assets: AssetsDirArg,
    /// Demo websockets of the viewers phase.
    #[arg(long, default_value_t = 200)]
    pub viewers: usize,
    /// Sockets of the hostile phase.
    #[arg(long, default_value_t = 8)]
    pub hostile: usize,
    /// Concurrent decode bombs.
    #[arg(long, default_value_t = 20)]
    pub bombs: usize,
    /// Photo uploads of the uploads phase.
    #[arg(long, default_value_t = 100)]
    pub uploads: usize,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,
    /// Length of the viewers and hostile phases.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Resident memory the server may reach in any phase.
    #[arg(long, default_value_t = 600)]
    pub max_rss_mb: u64,
    /// 99th percentile of /healthz latency allowed in any phase.
    #[arg(long, default_value_t = 200)]
    pub max_p99_ms: u64,
}

/// A request body that many requests send.
type Shared = Arc<[u8]>;

/// One phase's measurements.
struct Row {
    phase: &'static str,
    work: String,
    peak_mb: f64,
    settled_mb: f64,
    p50_ms: f64,
    p99_ms: f64,
    health_failures: usize,
}

pub fn run_loadtest(
    args: LoadtestArgs,
    ctx: &crate::commands::ctx::JobCtx,
) -> anyhow::Result<std::process::ExitCode> {
    let photo =
        std::fs::read(args.assets.assets_dir.join("face_recognition/obama.jpg")).with_context(|| {
            format!(
                "{}: the soak uploads this photo",
                args.assets.assets_dir.display()
            )
        })?;
    let (base, pid, _server) = match &args.url {
        Some(u) => (loopback(u)?, args.pid.expect("clap requires --pid"), None),
        None => {
            let s = crate::commands::loadtest::server::Spawned::start(&args, ctx)?;
            (s.base.clone(), s.pid(), Some(s))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let rows = rt.block_on(async {
        let t = Tester {
            base,
            pid,
            http: reqwest::Client::new(),
            photo: photo.into(),
            ctx: ctx.clone(),
        };
        t.wait_ready().await?;
        let baseline = rss_mb(pid).unwrap_or(0.0);
        crate::out!(ctx, "server pid {pid}, RSS {baseline:.0} MB before the soak");
        let mut rows = Vec::new();
        rows.push(t.phase("viewers", t.viewers(args.viewers, args.seconds)).await?);
        rows.push(t.phase("hostile", t.hostile(args.hostile, args.seconds)).await?);
        rows.push(t.phase("bombs", t.bombs(args.bombs)).await?);
        rows.push(
            t.phase("uploads", t.uploads(args.uploads, args.concurrency))
                .await?,
        );
        anyhow::Ok(rows)
    })?;
    let mut failed = false;
    crate::out!(ctx,
        "\n| phase   | work | peak RSS MB | settled RSS MB | /healthz p50 ms | p99 ms | failed probes | verdict |"
    );
    crate::out!(ctx, "|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let ok = r.peak_mb <= args.max_rss_mb as f64
            && r.p99_ms <= args.max_p99_ms as f64
            && r.health_failures == 0;
        failed |= !ok;
        crate::out!(
            ctx,
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} |",
            r.phase,
            r.work,
            r.peak_mb,
            r.settled_mb,
            r.p50_ms,
            r.p99_ms,
            r.health_failures,
            if ok { "ok" } else { "FAIL" }
        );
    }
    crate::out!(
        ctx,
        "\nbounds: RSS ≤ {} MB, /healthz p99 ≤ {} ms, no failed probe: {}",
        args.max_rss_mb,
        args.max_p99_ms,
        if failed { "NOT met" } else { "met" }
    );
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// The base URL, if its host is this machine; an error otherwise.
fn loopback(url: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
    let local = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if u.scheme() != "http" || !local {
        anyhow::bail!(
            "--url {url:?}: the soak only runs against http:// on this machine (127.0.0.1, ::1, localhost)"
        );
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Resident memory of a process, from /proc.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Tester {
    base: String,
    pid: u32,
    http: reqwest::Client,
    photo: Shared,
    ctx: crate::commands::ctx::JobCtx,
}

impl Tester {
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("{}/healthz did not answer within 120 s", self.base);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs `work` while probing health and memory; then lets the server settle for 3 s.
    async fn phase(
        &self,
        name: &'static str,
        work: impl std::future::Future<Output = anyhow::Result<String>>,
    ) -> anyhow::Result<Row> {
        crate::out!(self.ctx, "phase {name} …");
        let stop = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(Mutex::new(0f64));
        let probe = tokio::spawn({
            let (stop, latencies, failures) = (stop.clone(), latencies.clone(), failures.clone());
            let (http, url) = (self.http.clone(), format!("{}/healthz", self.base));
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = tokio::time::timeout(Duration::from_secs(5), http.get(&url).send())
                        .await
                        .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
                    if ok {
                        latencies.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let sampler = tokio::spawn({
            let (stop, peak, pid) = (stop.clone(), peak.clone(), self.pid);
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(mb) = rss_mb(pid) {
                        let mut p = peak.lock().unwrap();
                        *p = p.max(mb);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let result = work.await;
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::join!(probe, sampler);
        let work = result?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut l = latencies.lock().unwrap().clone();
        l.sort_by(f64::total_cmp);
        let peak_mb = *peak.lock().unwrap();
        let row = Row {
            phase: name,
            work,
            peak_mb,
            settled_mb: rss_mb(self.pid).unwrap_or(f64::NAN),
            p50_ms: percentile(&l, 0.5),
            p99_ms: percentile(&l, 0.99),
            health_failures: failures.load(Ordering::Relaxed),
        };
        crate::out!(
            self.ctx,
            "  {}: peak {:.0} MB, settled {:.0} MB, /healthz p99 {:.1} ms",
            row.work,
            row.peak_mb,
            row.settled_mb,
            row.p99_ms
        );
        Ok(row)
    }

    fn ws_url(&self) -> String {
        format!("{}/api/demo/ws", self.base.replacen("http://", "ws://", 1))
    }

    /// POST /api/demo/upload: (status, the client cookie the server set, upload id).
    async fn upload(&self, body: Shared, cookie: Option<&str>) -> anyhow::Result<Answer> {
        let mut rq = self
            .http
            .post(format!("{}/api/demo/upload", self.base))
            .body(body.to_vec());
        if let Some(c) = cookie {
            rq = rq.header("cookie", c);
        }
        let r = rq.send().await?;
        let status = r.status().as_u16();
        let set = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await?).unwrap_or_default();
        Ok((status, set, v["upload_id"].as_str().map(str::to_owned)))
    }

    async fn viewers(&self, n: usize, seconds: u64) -> anyhow::Result<String> {
        // One client streams a job the whole phase: upload, submit, read every frame.
        let (code, cookie, id) = self.upload(self.photo.clone(), None).await?;
        anyhow::ensure!(code == 200, "the streaming client's upload answered {code}");
        let (cookie, id) = (cookie.context("no client cookie")?, id.context("no upload id")?);
        let mut req = self.ws_url().into_client_request()?;
        req.headers_mut().insert("cookie", cookie.parse()?);
        let (mut streamer, _) = tokio_tungstenite::connect_async(req).await?;
        let submit = serde_json::json!({"type": "submit", "upload_id": id, "m": 0.0, "steps": 50, "seed": 1, "eta": 1.0});
        streamer.send(Message::Text(submit.to_string().into())).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let frames = tokio::spawn(async move {
            let mut frames = 0usize;
            while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, streamer.next()).await {
                frames += matches!(m, Message::Binary(_)) as usize;
            }
            frames
        });
        let hello = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (url, hello) = (self.ws_url(), hello.clone());
            tasks.spawn(async move {
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                    return;
                };
                let mut greeted = false;
                while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
                    if !greeted && matches!(m, Message::Text(_)) {
                        greeted = true;
                        hello.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let frames = frames.await?;
        Ok(format!(
            "{} of {n} sockets greeted, held {seconds} s; {frames} streamed frames",
            hello.load(Ordering::Relaxed)
        ))
    }

    async fn hostile(&self, n: usize, seconds: u64) -> anyhow::Result<String> {
        let big: Arc<String> = Arc::new("x".repeat(10 << 20));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let (sent, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (url, big, sent, closed) = (self.ws_url(), big.clone(), sent.clone(), closed.clone());
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    let _ = ws.send(Message::Text(big.as_str().into())).await;
                    // Never reads what the server says; only waits for it to hang up.
                    let hung_up = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await
                    .is_ok();
                    closed.fetch_add(hung_up as usize, Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(format!(
            "{} × 10 MiB messages on {n} sockets in {seconds} s; {} closed by the server",
            sent.load(Ordering::Relaxed),
            closed.load(Ordering::Relaxed)
        ))
    }

    async fn bombs(&self, n: usize) -> anyhow::Result<String> {
        let bomb: Shared = decode_bomb(5000, 5000)?.into();
        let size = bomb.len();
        let codes = futures_util::future::join_all((0..n).map(|_| self.upload(bomb.clone(), None))).await;
        Ok(format!(
            "{n} × {} KB PNG bombs: {}",
            size / 1024,
            histogram(codes)
        ))
    }

    async fn uploads(&self, n: usize, concurrency: usize) -> anyhow::Result<String> {
        let codes: Vec<_> = futures_util::stream::iter((0..n).map(|_| self.upload(self.photo.clone(), None)))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        Ok(format!(
            "{n} photo uploads, {concurrency} at a time: {}",
            histogram(codes)
        ))
    }
}

/// An upload's answer: status, error code, and the id of the upload.
type Answer = (u16, Option<String>, Option<String>);

/// `200×95, 413×5`: how many requests got each status (or a transport error).
fn histogram(results: Vec<anyhow::Result<Answer>>) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in results {
        let key = r.map_or_else(|_| "error".to_owned(), |(c, ..)| c.to_string());
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A zero-filled `w`×`h` 16-bit RGBA PNG, written row by row (the raw image is never held).
pub fn decode_bomb(w: u32, h: u32) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::Balanced);
    let mut writer = enc.write_header()?;
    let mut stream = writer.stream_writer()?;
    let row = vec![0u8; w as usize * 8];
    for _ in 0..h {
        std::io::Write::write_all(&mut stream, &row)?;
    }
    stream.finish()?;
    drop(writer);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_is_a_target() {
        for ok in [
            "http://127.0.0.1:3000",
            "http://localhost:8080/",
            "http://[::1]:3000",
            "http://127.1.2.3:9",
        ] {
            assert!(loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://192.0.2.1:3000",
            "http://example.com",
            "https://127.0.0.1:3000",
            "ftp://localhost",
            "nonsense",
        ] {
            assert!(loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bomb_is_small_and_decodes_to_its_stated_size() {
        let b = decode_bomb(640, 480).unwrap();
        assert!(b.len() < 8 << 10, "{} bytes", b.len());
        let img = image::load_from_memory(&b).unwrap();
        assert_eq!(
            (img.width(), img.height(), img.color()),
            (640, 480, image::ColorType::Rgba16)
        );
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert!(percentile(&[], 0.99).is_nan());
    }
}
