//! `cemiface eval`: 10-fold verification accuracy on insightface `.bin` sets (LFW, CFP-FP, AgeDB-30,
//! CALFW, CPLFW …) with flip-fused embeddings, as insightface's `eval/verification.py` reports it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::{Device, Tensor};
use cemiface_engine::data::image_tensor;
use cemiface_engine::device::{ComputeDevice, DeviceRequest};
use cemiface_engine::encoder::{DlibEncoder, IResNetEncoder, IdentityEncoder};
use cemiface_engine::image_io::{decode, ImageLimits};
use cemiface_engine::iresnet::IResNet;
use cemiface_engine::verification::verify;
use cemiface_engine::{checkpoint, insightface_bin};
use clap::Args;
use serde_json::json;

use crate::cli::AssetsDirArg;
use crate::identity_cli::Arch;

/// Options of `cemiface eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// insightface `.bin` verification sets (aligned 112×112 pairs).
    #[arg(required = true)]
    pub sets: Vec<PathBuf>,
    /// An IResNet checkpoint to evaluate (default: dlib's network from the assets).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Architecture of --checkpoint.
    #[arg(long, value_enum, default_value = "ir-se50", requires = "checkpoint")]
    pub arch: Arch,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Print `{"sets": {name: {accuracy, std, threshold}}, "average": a}`.
    #[arg(long)]
    pub json: bool,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
    #[command(flatten)]
    pub assets: AssetsDirArg,
}

fn embed_all(
    enc: &dyn IdentityEncoder,
    images: &[Vec<u8>],
    name: &str,
    batch: usize,
    dev: &Device,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(images.len());
    for (c, chunk) in images.chunks(batch.max(1)).enumerate() {
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
    }
    Ok(out)
}

/// `cemiface eval`.
pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let dev = ComputeDevice::select(args.device)?.device;
    let enc: Box<dyn IdentityEncoder> = match &args.checkpoint {
        None => Box::new(DlibEncoder::load(&args.assets.assets_dir, &dev)?),
        Some(p) => {
            let net = IResNet::new(args.arch.config(), checkpoint::var_builder(p, None, &dev)?)
                .with_context(|| format!("{} does not fit --arch {:?}", p.display(), args.arch))?;
            Box::new(IResNetEncoder::new(net, &dev))
        }
    };
    let mut results = BTreeMap::new();
    for path in &args.sets {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let set = insightface_bin::read(path)?;
        let emb = embed_all(enc.as_ref(), &set.images, &name, args.batch, &dev)?;
        let (a, b): (Vec<_>, Vec<_>) = emb.chunks(2).map(|p| (p[0].clone(), p[1].clone())).unzip();
        let r = verify(&a, &b, &set.same, 10).with_context(|| path.display().to_string())?;
        eprintln!(
            "{name}: {} pairs, accuracy {:.2}% ± {:.2}",
            set.same.len(),
            100.0 * r.accuracy,
            100.0 * r.std
        );
        results.insert(name, r);
    }
    let average = results.values().map(|r| r.accuracy).sum::<f64>() / results.len() as f64;
    if args.json {
        let sets: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(n, r)| {
                (
                    n.clone(),
                    json!({"accuracy": r.accuracy, "std": r.std, "threshold": r.threshold}),
                )
            })
            .collect();
        println!("{}", json!({"sets": sets, "average": average}));
    } else {
        println!("| set | accuracy (%) | std | threshold |\n|---|---|---|---|");
        for (n, r) in &results {
            println!(
                "| {n} | {:.2} | {:.2} | {:.2} |",
                100.0 * r.accuracy,
                100.0 * r.std,
                r.threshold
            );
        }
        println!("| average | {:.2} | | |", 100.0 * average);
    }
    Ok(())
}
