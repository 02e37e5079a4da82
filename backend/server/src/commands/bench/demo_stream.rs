//! `cemiface bench --demo-stream`: what streaming the live demo costs. Times the same DDIM run
//! (same preset, steps, seed) three ways: bare sampling; through the demo's queue with every
//! step's x̂0 encoded as a PNG frame and forwarded to a websocket sender; and the same with the
//! per-step E_id similarity. Prints the times and the ratios to bare sampling.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::ws::Message;
use candle_core::Device;
use cemiface_app::demo_protocol::JobRequest;
use cemiface_engine::data::image_io::{self, ImageLimits};
use cemiface_engine::diffusion::generator::Generator;

use crate::commands::diffusion::load_config;
use crate::demo::model::{DemoModel, Inquiry};
use crate::demo::queue::{QueueLimits, SamplingQueue};

/// Runs one job through a queue and drains its messages as a socket writer would; returns the
/// seconds from submission to the last message and the bytes sent.
fn streamed(
    rt: &tokio::runtime::Runtime,
    queue: &SamplingQueue,
    inquiry: &Inquiry,
    req: &JobRequest,
) -> anyhow::Result<(f64, usize)> {
    let start = Instant::now();
    let job = queue
        .submit("bench", "local", req.clone(), inquiry.clone())
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let bytes = rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let fwd = tokio::spawn(crate::demo::ws::forward(job, tx, false));
        let mut bytes = 0;
        while let Some(m) = rx.recv().await {
            bytes += match m {
                Message::Text(t) => t.len(),
                Message::Binary(b) => b.len(),
                _ => 0,
            };
        }
        let _ = fwd.await;
        bytes
    });
    Ok((start.elapsed().as_secs_f64(), bytes))
}

/// The table.
pub fn run(
    config: &str,
    steps: u32,
    iters: usize,
    assets_dir: &Path,
    ctx: &crate::commands::ctx::JobCtx,
) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let cfg = load_config(config)?;
    let model = Arc::new(DemoModel::new(
        Generator::untrained(cfg, assets_dir, &dev)?,
        assets_dir,
        &dev,
    )?);
    let photo = assets_dir.join("face_recognition/obama.jpg");
    let img = image_io::read(&photo, ImageLimits::default())
        .with_context(|| format!("{}: run scripts/setup.sh", photo.display()))?;
    let inquiry = model.prepare(&img, "obama.jpg")?.inquiry;
    let req = JobRequest {
        upload_id: "bench".into(),
        m: 0.0,
        steps,
        seed: 1,
        eta: 1.0,
        sweep: false,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let limits = |step_similarity| QueueLimits {
        workers: 1,
        max_queue: 1,
        max_active_per_client: 1,
        jobs_per_minute: u32::MAX,
        max_active_per_address: 1,
        address_jobs_per_minute: u32::MAX,
        keep_finished: std::time::Duration::ZERO,
        step_similarity,
    };
    let (plain, with_sim) = (
        SamplingQueue::start(model.clone(), limits(false)),
        SamplingQueue::start(model.clone(), limits(true)),
    );
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    let mut sent = [0, 0];
    // Bare sampling also runs on a long-lived thread of its own, as the queue's workers do (the
    // main thread's allocator state, after loading the models, makes it measurably slower).
    let (go, runs) = std::sync::mpsc::channel::<()>();
    let (done, results) = std::sync::mpsc::channel::<anyhow::Result<f64>>();
    // The inquiry's latent is fitted once, before any timing (the queue's runs then hit the cache).
    model.generator().fit_inquiry(&inquiry.c_id, &inquiry.face)?;
    let (m2, c2) = (model.clone(), inquiry.c_id.clone());
    std::thread::spawn(move || {
        for () in runs {
            let s = Instant::now();
            let r = m2
                .generator()
                .sample(&c2, &[0.0], &[1], steps as usize, 1.0, |_| {
                    ControlFlow::Continue(())
                });
            if done
                .send(r.map(|_| s.elapsed().as_secs_f64()).map_err(Into::into))
                .is_err()
            {
                return;
            }
        }
    });
    // Interleaved, after one warm-up round, so drift in the machine's speed hits all three alike.
    for round in 0..=iters.max(1) {
        go.send(())?;
        let bare = results.recv()??;
        let (a, bytes_a) = streamed(&rt, &plain, &inquiry, &req)?;
        let (b, bytes_b) = streamed(&rt, &with_sim, &inquiry, &req)?;
        if round > 0 {
            times[0].push(bare);
            times[1].push(a);
            times[2].push(b);
            sent = [bytes_a, bytes_b];
        }
    }
    plain.stop();
    with_sim.stop();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [t0, t1, t2] = times.each_mut().map(median);
    crate::out!(
        ctx,
        "{config}, {steps} DDIM steps, batch 1, on {} CPU thread(s), median of {iters}:",
        candle_core::utils::get_num_threads()
    );
    crate::out!(
        ctx,
        "| run | seconds | ÷ bare sampling | bytes sent |\n|---|---|---|---|"
    );
    crate::out!(ctx, "| bare sampling (no callback) | {t0:.3} | 1.000 | 0 |");
    crate::out!(
        ctx,
        "| demo job, x̂0 PNG frame every step | {t1:.3} | {:.3} | {} |",
        t1 / t0,
        sent[0]
    );
    crate::out!(
        ctx,
        "| demo job, frames + E_id similarity every step | {t2:.3} | {:.3} | {} |",
        t2 / t0,
        sent[1]
    );
    Ok(())
}
