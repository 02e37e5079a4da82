//! `cemiface eval`: 10-fold verification accuracy on insightface `.bin` sets (LFW, CFP-FP, AgeDB-30,
//! CALFW, CPLFW …) with flip-fused embeddings, as insightface's `eval/verification.py` reports it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::{Device, Tensor};
use cemiface_engine::data::image_io::{decode, ImageLimits};
use cemiface_engine::data::sources::image_tensor;
use cemiface_engine::device::{ComputeDevice, DeviceRequest};
use cemiface_engine::identity::encoder::{DlibEncoder, IResNetEncoder, IdentityEncoder};
use cemiface_engine::recognition::iresnet::IResNet;
use cemiface_engine::recognition::verification::verify;
use cemiface_engine::{checkpoint, data::insightface_bin};
use clap::Args;
use serde_json::json;

use crate::commands::ctx::{JobCtx, Stop};
use crate::commands::identity::Arch;
use crate::commands::AssetsDirArg;

/// Options of `cemiface eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Verification sets: insightface `.bin` files (aligned 112×112 pairs) or pair lists (any other
    /// file: lines `<image a> <image b> <0|1>`, paths relative to the list, aligned crops).
    #[arg(required = true)]
    pub sets: Vec<PathBuf>,
    /// The network to evaluate: a `cemiface train-fr` run or checkpoint folder, or an IResNet
    /// weights file (insightface/AdaFace .pth or .safetensors, see --arch). Default: dlib's network.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Architecture of a --checkpoint weights file.
    #[arg(long, value_enum, default_value = "ir-se50", requires = "checkpoint")]
    pub arch: Arch,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Write every set's flip-fused embeddings and pair labels as JSON
    /// (`{"<set>": {"embeddings": [[…]], "same": […]}}`) for analysis elsewhere.
    #[arg(long)]
    pub save_embeddings: Option<PathBuf>,
    /// Print `{"sets": {name: {accuracy, std, threshold}}, "average": a}`.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
    #[command(flatten)]
    pub assets: AssetsDirArg,
}

#[allow(clippy::too_many_arguments)]
fn embed_all(
    enc: &dyn IdentityEncoder,
    images: &[Vec<u8>],
    name: &str,
    batch: usize,
    dev: &Device,
    ctx: &JobCtx,
    done: &mut u64,
    total: u64,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(images.len());
    for (c, chunk) in images.chunks(batch.max(1)).enumerate() {
        if ctx.requested().is_some() {
            // Evaluation keeps no state worth a checkpoint (the runner refuses to pause it).
            return Err(Stop::Cancelled.into());
        }
        let tensors = chunk
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let img = decode(
                    bytes,
                    &format!("{name} image {}", c * batch + i),
                    ImageLimits::default(),
                )?;
                Ok(image_tensor(&img, 112, dev)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let x = Tensor::cat(&tensors, 0)?;
        // Flip fusion: the embedding of an image plus that of its mirror image.
        let e = (enc.descriptors(&x)? + enc.descriptors(&x.flip(&[3])?)?)?;
        out.extend(e.to_vec2::<f32>()?);
        *done += chunk.len() as u64;
        ctx.progress(*done, total, "img");
    }
    Ok(out)
}

/// `cemiface eval`.
pub fn run_eval(args: EvalArgs, ctx: &JobCtx) -> anyhow::Result<()> {
    let dev = ComputeDevice::select(args.device)?.device;
    let enc: Box<dyn IdentityEncoder> = match &args.checkpoint {
        None => Box::new(DlibEncoder::load(&args.assets.assets_dir, &dev)?),
        Some(p) if p.is_dir() => {
            let (net, ckpt) = cemiface_engine::recognition::trainer::load_backbone(p, &dev)?;
            ctx.log(format!("evaluating {}", ckpt.display()));
            Box::new(IResNetEncoder::new(net, &dev))
        }
        Some(p) => {
            let net = IResNet::new(args.arch.config(), checkpoint::var_builder(p, None, &dev)?)
                .with_context(|| format!("{} does not fit --arch {:?}", p.display(), args.arch))?;
            Box::new(IResNetEncoder::new(net, &dev))
        }
    };
    let mut results = BTreeMap::new();
    let mut saved = serde_json::Map::new();
    let (mut done, mut total) = (0u64, 0u64);
    let mut sets = Vec::new();
    for path in &args.sets {
        let set = if path.extension().is_some_and(|e| e == "bin") {
            insightface_bin::read(path)?
        } else {
            cemiface_engine::data::pair_list::read(path)?
        };
        total += set.images.len() as u64;
        sets.push(set);
    }
    for (path, set) in args.sets.iter().zip(sets) {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let emb = embed_all(
            enc.as_ref(),
            &set.images,
            &name,
            args.batch,
            &dev,
            ctx,
            &mut done,
            total,
        )?;
        if args.save_embeddings.is_some() {
            saved.insert(name.clone(), json!({"embeddings": emb, "same": set.same}));
        }
        let (a, b): (Vec<_>, Vec<_>) = emb.chunks(2).map(|p| (p[0].clone(), p[1].clone())).unzip();
        let r = verify(&a, &b, &set.same, 10).with_context(|| path.display().to_string())?;
        ctx.log(format!(
            "{name}: {} pairs, accuracy {:.2}% ± {:.2}",
            set.same.len(),
            100.0 * r.accuracy,
            100.0 * r.std
        ));
        results.insert(name, r);
    }
    if let Some(p) = &args.save_embeddings {
        std::fs::write(p, serde_json::Value::Object(saved).to_string())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let average = results.values().map(|r| r.accuracy).sum::<f64>() / results.len() as f64;
    let sets: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                json!({"accuracy": r.accuracy, "std": r.std, "threshold": r.threshold}),
            )
        })
        .collect();
    let report = json!({"sets": sets, "average": average});
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
        ctx.artifact("report", p, None);
    }
    if args.json {
        crate::out!(ctx, "{report}");
    } else {
        crate::out!(ctx, "| set | accuracy (%) | std | threshold |\n|---|---|---|---|");
        for (n, r) in &results {
            crate::out!(
                ctx,
                "| {n} | {:.2} | {:.2} | {:.2} |",
                100.0 * r.accuracy,
                100.0 * r.std,
                r.threshold
            );
        }
        crate::out!(ctx, "| average | {:.2} | | |", 100.0 * average);
        let five = ["lfw", "cfp_fp", "agedb_30", "calfw", "cplfw"];
        let key = |n: &str| n.to_ascii_lowercase().replace('-', "_");
        if results.len() == 5 && five.iter().all(|f| results.keys().any(|n| key(n) == *f)) {
            // CemiFace's gap to real data: CASIA-WebFace with the same recipe averages 94.26.
            crate::out!(
                ctx,
                "five-benchmark AVG {:.2}; GtR (CemiFace, vs CASIA-WebFace 94.26) {:.2}",
                100.0 * average,
                94.26 - 100.0 * average
            );
        }
    }
    Ok(())
}
