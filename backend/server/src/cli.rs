//! The `cemiface` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cemiface_engine::device::{ComputeDevice, DeviceRequest};
use clap::{Args, Parser, Subcommand};

use crate::commands::AssetsDirArg;
use crate::web::client_addr::AddrPolicy;
use crate::web::router;
use crate::web::state::AppState;

mod console;
pub mod progress;

use console::console;

/// CemiFace-rs: center-based semi-hard synthetic face generation for face recognition.
#[derive(Debug, Parser)]
#[command(name = "cemiface", version, about)]
pub struct Cli {
    /// Log filter: a level (`info`, `debug`) or directives (`cemiface_server=debug,tower_http=debug`).
    /// `RUST_LOG` overrides it.
    #[arg(long, global = true, env = "CEMIFACE_LOG", default_value = "info")]
    pub log_level: String,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web app: demo pages, admin panel, API and `/healthz`.
    Serve(ServeArgs),
    /// Check the pinned model assets (presence and sha256); exit code 1 if any is missing or corrupt.
    Assets(AssetsArgs),
    /// Find the largest face in a photo and write its ArcFace 112×112 crop (and dlib's chip).
    Align(crate::commands::identity::AlignArgs),
    /// Identity embeddings of photos or aligned crops, and their pairwise cosine similarity.
    Embed(crate::commands::identity::EmbedArgs),
    /// Train the CemiFace generator (resumable; metrics in <run-dir>/metrics.jsonl).
    TrainDiffusion(crate::commands::diffusion::TrainArgs),
    /// Generate faces of an inquiry identity at similarity m with a trained generator.
    Sample(crate::commands::diffusion::SampleArgs),
    /// Parameters, FLOPs and DDIM timesteps of a preset or config.
    ModelInfo(crate::commands::diffusion::ModelInfoArgs),
    /// Time the UNet of a preset: forward, forward + backward, DDIM step (a table).
    Bench(crate::commands::bench::BenchArgs),
    /// Check a compute device against the CPU (UNet, DDIM-20, dlib, latent denoiser) and time it
    /// (DDIM-20 latency and images/s, training steps/s); `--device cpu` checks the GPU code path.
    DeviceCheck(crate::commands::device_check::DeviceCheckArgs),
    /// Soak a server on this machine (websocket viewers, hostile sockets, decode bombs, upload
    /// bursts) and check its memory and /healthz latency against bounds.
    Loadtest(crate::commands::loadtest::LoadtestArgs),
    /// Fuzz the parsers of outside input (RecordIO, .bin, tfjs manifests, configs, demo protocol,
    /// images) from the corpus in fuzz/corpus; panicking inputs are saved to fuzz/crashes.
    Fuzz(crate::commands::fuzz::FuzzArgs),
    /// Generate a labelled synthetic data set (sharded, resumable) with a similarity report.
    Generate(crate::commands::generate::GenerateArgs),
    /// Train a face-recognition model (IResNet + CosFace/ArcFace) on a labelled, e.g. generated, set.
    TrainFr(crate::commands::train_fr::TrainFrArgs),
    /// 10-fold verification accuracy on insightface .bin sets (LFW, CFP-FP, AgeDB-30, …).
    Eval(crate::commands::eval::EvalArgs),
    /// Measure a generator's similarity control: achieved similarity per target m under E_id and an
    /// independent judge, Spearman correlation, plot and contact sheet.
    ReportControl(crate::commands::report_control::ReportControlArgs),
    /// Print a password hash for CEMIFACE_ADMIN_PASSWORD_HASH (the password is read from stdin).
    HashPassword,
}

/// Options of `cemiface serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: LEPTOS_SITE_ADDR, else 127.0.0.1:3000]. Port 0 picks a free port.
    #[arg(long, env = "CEMIFACE_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Folder for runs, jobs and uploads (created if missing).
    #[arg(long, env = "CEMIFACE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub assets: AssetsDirArg,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
    /// Folder of the built site (wasm, JS, CSS, public files), as written by `cargo leptos build`.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    #[command(flatten)]
    pub demo: DemoArgs,
    #[command(flatten)]
    pub jobs: JobArgs,
    /// Seconds a client may take to send a request's headers before its connection is closed.
    #[arg(long, env = "CEMIFACE_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a request body may stall between two pieces before the request fails.
    #[arg(long, env = "CEMIFACE_BODY_TIMEOUT", default_value_t = 20)]
    pub body_timeout: u64,
    /// Take the client's address from this header (e.g. X-Forwarded-For; its last entry), for a
    /// server behind a reverse proxy you run. Without it the connection's address is used, and
    /// the header is ignored (clients could write anything there).
    #[arg(long, env = "CEMIFACE_TRUSTED_PROXY_HEADER")]
    pub trusted_proxy_header: Option<String>,
}

/// Options of the job system and the admin panel.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Admin password hash (`cemiface hash-password`); without it /admin stays locked.
    #[arg(long, env = "CEMIFACE_ADMIN_PASSWORD_HASH", hide_env_values = true)]
    pub admin_password_hash: Option<String>,
    /// Jobs that may run at once on the compute device.
    #[arg(long, env = "CEMIFACE_JOB_SLOTS", default_value_t = 1)]
    pub job_slots: usize,
    /// Mark cookies Secure (set when the server is reached over https, e.g. behind a TLS proxy).
    #[arg(long, env = "CEMIFACE_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Let webhooks reach loopback, private and link-local addresses (receivers on the lab's own
    /// network). Without it they may only reach public addresses.
    #[arg(long, env = "CEMIFACE_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Extra root certificates (PEM) trusted for https webhooks, e.g. the lab's internal CA.
    #[arg(long, env = "CEMIFACE_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// Where generation jobs run: `local` (this process) or `slurm` (sbatch arrays; the data
    /// folder must be on a file system the nodes share, at the same path).
    #[arg(long, env = "CEMIFACE_EXECUTOR", value_parser = ["local", "slurm"], default_value = "local")]
    pub executor: String,
    /// Slurm partition of the tasks (default: the cluster's default partition).
    #[arg(long, env = "CEMIFACE_SLURM_PARTITION")]
    pub slurm_partition: Option<String>,
    /// Slurm account charged for the tasks.
    #[arg(long, env = "CEMIFACE_SLURM_ACCOUNT")]
    pub slurm_account: Option<String>,
    /// Array tasks per generation.
    #[arg(long, env = "CEMIFACE_SLURM_SHARDS", default_value_t = 4)]
    pub slurm_shards: usize,
    /// Further sbatch options, space-separated, e.g. "--gres=gpu:1 --time=08:00:00".
    #[arg(
        long,
        env = "CEMIFACE_SLURM_EXTRA",
        allow_hyphen_values = true,
        default_value = ""
    )]
    pub slurm_extra: String,
    /// Resubmissions of a failed shard before its job fails.
    #[arg(long, env = "CEMIFACE_SLURM_RETRIES", default_value_t = 2)]
    pub slurm_retries: u32,
}

impl JobArgs {
    /// The executor these options name.
    pub fn executor(&self) -> anyhow::Result<crate::jobs::runner::Executor> {
        use crate::jobs::runner::Executor;
        Ok(match self.executor.as_str() {
            "slurm" => {
                if !(1..=10_000).contains(&self.slurm_shards) {
                    anyhow::bail!("--slurm-shards {}: use 1 to 10000", self.slurm_shards);
                }
                Executor::Slurm(crate::jobs::slurm::SlurmSettings {
                    partition: self.slurm_partition.clone().filter(|p| !p.trim().is_empty()),
                    account: self.slurm_account.clone().filter(|a| !a.trim().is_empty()),
                    shards: self.slurm_shards,
                    extra: self.slurm_extra.split_whitespace().map(str::to_owned).collect(),
                    retries: self.slurm_retries,
                })
            }
            _ => Executor::Local,
        })
    }
}

/// Options of the live demo.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Generator the demo samples with: a checkpoint folder or a `train-diffusion` run folder (its
    /// newest checkpoint). Without one the demo page says how to train one.
    #[arg(long, env = "CEMIFACE_GENERATOR", default_value = "models/latent-dcgan")]
    pub generator: PathBuf,
    /// Demo jobs sampled at the same time (each on its own worker thread).
    #[arg(long, env = "CEMIFACE_DEMO_WORKERS", default_value_t = 1)]
    pub demo_workers: usize,
    /// Most demo jobs waiting at once; more are refused with "queue full".
    #[arg(long, env = "CEMIFACE_DEMO_QUEUE", default_value_t = 8)]
    pub demo_queue: usize,
    /// Demo jobs one visitor may start per minute.
    #[arg(long, env = "CEMIFACE_DEMO_JOBS_PER_MINUTE", default_value_t = 12)]
    pub demo_jobs_per_minute: u32,
    /// Largest photo upload, in bytes.
    #[arg(long, env = "CEMIFACE_UPLOAD_MAX_BYTES", default_value_t = 10 << 20)]
    pub upload_max_bytes: u64,
    /// Largest photo upload, in pixels (width × height).
    #[arg(long, env = "CEMIFACE_UPLOAD_MAX_PIXELS", default_value_t = 25_000_000)]
    pub upload_max_pixels: u64,
    /// Skip the per-step E_id similarity of x̂0 (the final image's is still measured).
    #[arg(long, env = "CEMIFACE_DEMO_NO_STEP_SIMILARITY")]
    pub no_step_similarity: bool,
    /// Demo jobs one network (an IPv4 address or an IPv6 /64) may have queued or running, whatever
    /// browsers or client ids it uses.
    #[arg(long, env = "CEMIFACE_DEMO_JOBS_PER_ADDRESS", default_value_t = 4)]
    pub demo_jobs_per_address: usize,
    /// Demo websockets one network may hold open.
    #[arg(long, env = "CEMIFACE_DEMO_SOCKETS_PER_ADDRESS", default_value_t = 32)]
    pub demo_sockets_per_address: usize,
    /// Photo uploads one network may send per minute.
    #[arg(long, env = "CEMIFACE_UPLOADS_PER_MINUTE", default_value_t = 30)]
    pub uploads_per_minute: u32,
}

impl DemoArgs {
    /// The demo settings these options give.
    pub fn settings(&self) -> anyhow::Result<crate::demo::DemoSettings> {
        if self.demo_workers == 0 || self.demo_jobs_per_minute == 0 {
            anyhow::bail!("--demo-workers and --demo-jobs-per-minute must be at least 1");
        }
        let mut s = crate::demo::DemoSettings::default();
        s.queue.workers = self.demo_workers;
        s.queue.max_queue = self.demo_queue;
        s.queue.jobs_per_minute = self.demo_jobs_per_minute;
        s.queue.step_similarity = !self.no_step_similarity;
        if self.demo_jobs_per_address == 0
            || self.demo_sockets_per_address == 0
            || self.uploads_per_minute == 0
        {
            anyhow::bail!(
                "--demo-jobs-per-address, --demo-sockets-per-address and --uploads-per-minute must be at least 1"
            );
        }
        s.queue.max_active_per_address = self.demo_jobs_per_address;
        s.max_sockets_per_address = self.demo_sockets_per_address;
        s.uploads_per_minute_per_address = self.uploads_per_minute;
        s.max_upload_bytes = self.upload_max_bytes;
        s.max_pixels = self.upload_max_pixels;
        Ok(s)
    }
}

/// Options of `cemiface assets`.
#[derive(Debug, Args)]
pub struct AssetsArgs {
    #[command(flatten)]
    pub assets: AssetsDirArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Entry point of the binary: parses arguments, runs the command, reports errors.
/// glibc serves every allocation above its mmap threshold (at most 32 MB, adjusted at run time)
/// with a fresh `mmap` and unmaps it on free: each new activation or gradient tensor then costs a
/// page fault and a kernel zero-fill per 4 KiB page. Measured on a demo-64 UNet forward at batch 8
/// (2 threads): 12 % of the time was in the kernel's page-fault path, and serving tensors up to
/// 256 MB from the heap (kept up to 512 MB free before trimming) took it from 0.97 s to 0.66 s at
/// the same peak resident size. The demo still hands memory back after upload bursts
/// (`malloc_trim`, `demo::upload`).
#[allow(unsafe_code)]
fn keep_tensor_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

pub fn main() -> ExitCode {
    keep_tensor_memory();
    // Candle looks its thread count up at every matmul: without RAYON_NUM_THREADS that means reading
    // the CPU topology files each time. Pin it once (same value Candle would pick).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var(
            "RAYON_NUM_THREADS",
            candle_core::utils::get_num_threads().to_string(),
        );
    }
    let mut args: Vec<String> = std::env::args().collect();
    let mut cli = Cli::parse_from(&args);
    if cli.command.is_none() {
        args.push("serve".into());
        cli = Cli::parse_from(&args);
    }
    if let Err(e) = crate::telemetry::init(&cli.log_level) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    use crate::commands::{
        bench, device_check, diffusion, eval, fuzz, generate, identity, loadtest, report_control, train_fr,
    };
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command.expect("set above") {
        Command::Serve(a) => run_serve(a),
        Command::Assets(a) => run_assets(a),
        Command::Align(a) => done(identity::run_align(a, &console("align"))),
        Command::Embed(a) => done(identity::run_embed(a, &console("embed"))),
        Command::TrainDiffusion(a) => done(diffusion::run_train(a, &console("train"))),
        Command::Sample(a) => done(diffusion::run_sample(a, &console("sample"))),
        Command::ModelInfo(a) => done(diffusion::run_model_info(a, &console("model-info"))),
        Command::Bench(a) => done(bench::run_bench(a, &console("bench"))),
        Command::DeviceCheck(a) => done(device_check::run_device_check(a, &console("device-check"))),
        Command::Loadtest(a) => loadtest::run_loadtest(a, &console("loadtest")),
        Command::Fuzz(a) => fuzz::run_fuzz(a, &console("fuzz")),
        Command::Generate(a) => done(generate::run_generate(a, &console("generating"))),
        Command::TrainFr(a) => done(train_fr::run_train_fr(a, &console("train-fr"))),
        Command::Eval(a) => done(eval::run_eval(a, &console("eval"))),
        Command::ReportControl(a) => done(report_control::run_report_control(a, &console("report-control"))),
        Command::HashPassword => run_hash_password(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let device = ComputeDevice::select(args.device)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data folder {}", args.data_dir.display()))?;
    let mut leptos = leptos::prelude::get_configuration(None)
        .context("reading the Leptos configuration from the environment")?
        .leptos_options;
    if leptos.output_name.is_empty() {
        // Set at build time by cargo-leptos; plain `cargo build` leaves it empty.
        leptos.output_name = "cemiface".into();
    }
    leptos.site_root = args.site_root.display().to_string().into();
    let addr = args.addr.unwrap_or(leptos.site_addr);
    let bundle = args
        .site_root
        .join("pkg")
        .join(format!("{}.wasm", leptos.output_name));
    if !bundle.exists() {
        tracing::warn!(
            "browser bundle {} not found: pages render but stay static; build it with \
             `cargo leptos build --release` (scripts/serve.sh does)",
            bundle.display()
        );
    }
    let demo = crate::demo::Demo::start(
        &args.demo.generator,
        &args.assets.assets_dir,
        &device.device,
        args.demo.settings()?,
    );
    if args.jobs.job_slots == 0 {
        anyhow::bail!("--job-slots must be at least 1");
    }
    let jobs = crate::jobs::Jobs::start(
        crate::jobs::runner::RunnerSettings {
            data_dir: args.data_dir.clone(),
            assets_dir: args.assets.assets_dir.clone(),
            device: args.device,
            device_label: device.label.clone(),
            slots: args.jobs.job_slots,
            default_generator: args.demo.generator.clone(),
            executor: args.jobs.executor()?,
        },
        args.jobs
            .admin_password_hash
            .clone()
            .filter(|h| !h.trim().is_empty()),
        args.jobs.secure_cookies,
        crate::jobs::webhook::WebhookPolicy::new(
            args.jobs.webhook_allow_private,
            args.jobs.webhook_ca_file.as_deref(),
        )?,
    )?;
    if jobs.admin_hash.is_none() {
        tracing::warn!("no admin password hash configured: /admin is locked (see `cemiface hash-password`)");
    }
    let state = AppState::new(leptos, args.assets.assets_dir, args.data_dir, device)
        .with_demo(demo)
        .with_jobs(jobs)
        .with_addr_policy(AddrPolicy::new(args.trusted_proxy_header.as_deref())?);
    let runner = state.jobs.as_ref().map(|j| j.runner.clone());
    if args.header_timeout == 0 || args.body_timeout == 0 {
        anyhow::bail!("--header-timeout and --body-timeout must be at least 1 second");
    }
    let conn_limits = router::ConnLimits {
        header_read: std::time::Duration::from_secs(args.header_timeout),
        body_idle: std::time::Duration::from_secs(args.body_timeout),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(device = %state.inner.device, "listening on http://{local}");
        router::run(listener, state, router::shutdown_signal(), conn_limits).await?;
        if let Some(r) = runner {
            // Running jobs checkpoint and stop; they show as interrupted and resume on request.
            r.shutdown();
            let t = std::time::Instant::now();
            while !r.running().is_empty() && t.elapsed() < std::time::Duration::from_secs(120) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        tracing::info!("server stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_hash_password() -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("password (input is shown; end with Enter):");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        anyhow::bail!("the password must have at least 8 characters");
    }
    println!("{}", crate::web::auth::hash_password(password));
    Ok(ExitCode::SUCCESS)
}

fn run_assets(args: AssetsArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.assets.assets_dir;
    let groups = cemiface_engine::assets::check(dir, &cemiface_engine::assets::pinned())?;
    let all_present = groups.values().all(|g| g.present);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&groups)?);
    } else {
        println!("assets in {}:", dir.display());
        for (name, g) in &groups {
            let state = if g.present { "installed" } else { "NOT INSTALLED" };
            println!("  {name:<20} {state:<14} {}", g.source);
            for (file, s) in g.files.iter().filter(|(_, s)| s.as_str() != "ok") {
                println!("      {file}: {}", s.as_str());
            }
        }
        if !all_present {
            println!("run scripts/setup.sh to fetch and verify the missing assets");
        }
    }
    Ok(if all_present {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
