//! `cemiface report-control`: does the generator's similarity control work? Held-out inquiry faces
//! (the public-domain photos, aligned, and DCGAN samples from a stream the training never drew
//! from) are generated at each target m; the achieved similarity to the inquiry is measured by the
//! generator's own E_id and by an independent judge (MobileFace), with a table, the Spearman
//! correlation, a plot and a contact sheet, over all inquiries and per source. A latent generator
//! conditions DCGAN inquiries on the latent they were drawn from and inverts the photos.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::Tensor;
use cemiface_engine::data::image_io::{self, ImageLimits};
use cemiface_engine::data::sources::image_tensor;
use cemiface_engine::device::{ComputeDevice, DeviceRequest};
use cemiface_engine::diffusion::generator::Generator;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::identity::centring::{self, IdentityMean, MeanProvenance};
use cemiface_engine::identity::encoder::IdentityEncoder;
use cemiface_engine::identity::mobileface::MobileFace;
use cemiface_engine::report::control::{measure, ControlInquiry, ControlReport};
use cemiface_engine::synth::inquiry::{default_threshold, select, InquirySource};
use clap::Args;

use crate::commands::AssetsDirArg;

/// The photos used as inquiries (public domain, `assets/face_recognition/`).
const PHOTOS: [&str; 4] = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];

/// Options of `cemiface report-control`.
#[derive(Debug, Args)]
pub struct ReportControlArgs {
    /// Generator: a checkpoint folder or a `train-diffusion` run folder (its newest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Held-out DCGAN inquiry identities (the photos come on top).
    #[arg(long, default_value_t = 100)]
    pub inquiries: usize,
    /// Similarity targets.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "-1,-0.5,0,0.5,1",
        allow_hyphen_values = true
    )]
    pub m: Vec<f32>,
    /// DDIM steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// DDIM η in [0, 1] (1: the stochastic sampler `generate` and the demo default to).
    #[arg(long, default_value_t = 1.0)]
    pub eta: f64,
    /// Seed of the inquiry stream and of the sampling noise.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Leave the photos out.
    #[arg(long)]
    pub no_photos: bool,
    /// Folder for report.json, samples.json (every sample), control.png and contact_sheet.png.
    #[arg(long, default_value = "report-control")]
    pub out: PathBuf,
    /// Inquiries shown on the contact sheet.
    #[arg(long, default_value_t = 8)]
    pub sheet_rows: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub assets: AssetsDirArg,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

/// `cemiface report-control`.
pub fn run_report_control(args: ReportControlArgs, ctx: &crate::commands::ctx::JobCtx) -> anyhow::Result<()> {
    anyhow::ensure!(!args.m.is_empty(), "--m needs at least one value");
    if let Some(bad) = args.m.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
        anyhow::bail!("--m {bad} is outside [-1, 1]");
    }
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.eta),
        "--eta {} is outside [0, 1]",
        args.eta
    );
    let dev = ComputeDevice::select(args.device)?.device;
    let assets = &args.assets.assets_dir;
    let gen = Generator::load(&args.checkpoint, false, assets, &dev)?;
    let size = gen.image_size();
    let e_id = gen.encoder();
    let mobileface: std::sync::Arc<dyn IdentityEncoder> =
        std::sync::Arc::new(MobileFace::load(assets, &dev)?);
    // The independent judge is centred on the generator's own reference set, when it has one.
    let judge = match gen.reference_faces(1024)? {
        Some(faces) => {
            let mut d = Vec::new();
            for start in (0..faces.dim(0)?).step_by(64) {
                d.push(mobileface.descriptors(&faces.narrow(0, start, 64.min(faces.dim(0)? - start))?)?);
            }
            let mean = IdentityMean::from_descriptors(
                &Tensor::cat(&d, 0)?,
                MeanProvenance {
                    encoder: mobileface.name(),
                    reference: "the generator's reference anchors".into(),
                    count: faces.dim(0)?,
                },
            )?;
            centring::centred(mobileface, Some(&mean))?
        }
        None => mobileface,
    };
    // The face detector runs on the CPU on every device (`nn::depthwise`).
    let detector = FaceAligner::load(assets, &candle_core::Device::Cpu)?;
    let mut inquiries: Vec<ControlInquiry> = Vec::new();
    if !args.no_photos {
        let aligner = &detector;
        for name in PHOTOS {
            let path = assets.join("face_recognition").join(name);
            let img = image_io::read(&path, ImageLimits::default())?;
            let face = aligner
                .align(&img, name)
                .with_context(|| format!("aligning {}", path.display()))?;
            inquiries.push(ControlInquiry {
                name: format!("photo_{name}"),
                source: "photo".into(),
                face: image_tensor(&face.arcface, size, &dev)?,
                latent: None,
            });
        }
    }
    if args.inquiries > 0 {
        let source = InquirySource::Dcgan {
            weights: assets.join("gan-face-generate/weights.tar"),
            faces: Some(assets.to_path_buf()),
        };
        // A seed domain of its own: training draws its faces from NoiseRng::new(train.seed).
        let stream_seed = cemiface_engine::noise::NoiseRng::derive(&[args.seed, 0xC0_27_01]);
        let (picked, _) = select(
            &source,
            args.inquiries,
            default_threshold(e_id.as_ref()),
            e_id.as_ref(),
            size,
            stream_seed,
            &dev,
        )?;
        for q in picked {
            let img = q.image.as_ref().context("DCGAN inquiries carry their image")?;
            inquiries.push(ControlInquiry {
                face: image_tensor(img, size, &dev)?,
                latent: q.latent_tensor(&dev)?,
                name: q.name,
                source: "dcgan".into(),
            });
        }
    }
    let total = inquiries.len() as u64;
    let mut done = 0;
    ctx.progress(0, total, "inquiries");
    let judges: [&dyn IdentityEncoder; 2] = [e_id.as_ref(), judge.as_ref()];
    let report = measure(
        &gen,
        &judges,
        &inquiries,
        &args.m,
        args.steps,
        args.eta,
        args.seed,
        args.sheet_rows,
        Some(&detector),
        |_, _| {
            done += 1;
            ctx.progress(done, total, "inquiries");
            ControlFlow::Continue(())
        },
    )?;
    let mut report = report;
    if let Some(gan) = gen.decoder() {
        // Baseline: raw DCGAN samples (seeded, unfiltered) through the same detector.
        let x = gan.sample(
            100,
            &mut cemiface_engine::noise::NoiseRng::new(args.seed ^ 0xFACE),
        )?;
        let mut found = 0;
        for i in 0..100 {
            found +=
                detector.finds_face(&cemiface_engine::data::sources::tensor_image(&x.get(i)?)?)? as usize;
        }
        report.baseline_face_rate = Some(found as f64 / 100.0);
    }
    write(&report, &args)?;
    if args.json {
        crate::out!(ctx, "{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report, ctx);
        crate::out!(
            ctx,
            "→ {}/report.json, control.png (and .svg), contact_sheet.png",
            args.out.display()
        );
    }
    Ok(())
}

fn write(report: &ControlReport, args: &ReportControlArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut json = serde_json::to_value(report)?;
    json["checkpoint"] = args.checkpoint.display().to_string().into();
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(
        args.out.join("samples.json"),
        serde_json::to_string(&report.samples_json())?,
    )?;
    report.plot().save(&args.out.join("control"), 720, 480)?;
    image_io::write(&report.contact_sheet(), &args.out.join("contact_sheet.png"))?;
    Ok(())
}

fn print_table(r: &ControlReport, ctx: &crate::commands::ctx::JobCtx) {
    if !r.face_rate_by_m.is_empty() {
        let rates: Vec<String> = r
            .face_rate_by_m
            .iter()
            .map(|(m, f)| format!("m {m}: {f:.2}"))
            .collect();
        crate::out!(ctx, "face rate (detector finds a face): {}", rates.join(", "));
        if let Some(b) = r.baseline_face_rate {
            crate::out!(ctx, "face rate of raw DCGAN samples (baseline): {b:.2}");
        }
    }
    let names: Vec<&String> = r.judges.keys().collect();
    crate::out!(
        ctx,
        "{} inquiries, {} DDIM steps, mean achieved similarity (± std) per target m:",
        r.inquiries.len(),
        r.steps
    );
    crate::out!(
        ctx,
        "| m | {} |",
        names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" | ")
    );
    crate::out!(ctx, "|---|{}", "---|".repeat(names.len()));
    for m in &r.m {
        let key = format!("{m}");
        let cells: Vec<String> = r
            .judges
            .values()
            .map(|j| format!("{:+.3} ± {:.3}", j.mean_by_m[&key], j.std_by_m[&key]))
            .collect();
        crate::out!(ctx, "| {m:+.2} | {} |", cells.join(" | "));
    }
    if r.by_source.len() > 1 {
        for (source, judges) in &r.by_source {
            let n = r.sources.iter().filter(|s| *s == source).count();
            let cells: Vec<String> = judges
                .iter()
                .map(|(name, j)| {
                    let means: Vec<String> =
                        r.m.iter()
                            .map(|m| format!("{:+.2}", j.mean_by_m[&format!("{m}")]))
                            .collect();
                    format!("{name} {} (Spearman {:.2})", means.join(" "), j.spearman)
                })
                .collect();
            crate::out!(ctx, "{source} inquiries ({n}): {}", cells.join("; "));
        }
    }
    for (name, j) in &r.judges {
        crate::out!(
            ctx,
            "{name}: Spearman(m, achieved) = {:.3}; means {} with m",
            j.spearman,
            if j.monotonic {
                "increase strictly"
            } else {
                "do NOT increase strictly"
            }
        );
        if let Some(inv) = j.inversion {
            crate::out!(
                ctx,
                "{name}: G(z_a), the inquiry's latent (its own for DCGAN inquiries, inverted for photos), scores {inv:+.3} (the ceiling of m = 1)"
            );
        }
    }
}
