//! `cemiface align` and `cemiface embed`: the identity pipeline from the command line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use cemiface_engine::checkpoint;
use cemiface_engine::data::image_io::{self, ImageLimits};
use cemiface_engine::data::sources::image_tensor;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::identity::encoder::{
    cosine_matrix, l2_normalize, DlibEncoder, IResNetEncoder, IdentityEncoder,
};
use cemiface_engine::recognition::iresnet::{IResNet, IResNetConfig};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::commands::AssetsDirArg;

/// Options of `cemiface align`.
#[derive(Debug, Args)]
pub struct AlignArgs {
    /// The photo (JPEG, PNG or WebP).
    pub photo: PathBuf,
    /// Where to write the ArcFace 112×112 crop (PNG/JPEG by extension).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write dlib's 150×150 face chip here.
    #[arg(long)]
    pub chip: Option<PathBuf>,
    #[command(flatten)]
    pub assets: AssetsDirArg,
}

/// IResNet architectures a checkpoint can have.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Arch {
    /// insightface r18 (ArcFace/CosFace checkpoints, RGB)
    R18,
    R34,
    R50,
    R100,
    /// AdaFace IR-50 (BGR input), CemiFace's E_id
    AdafaceIr50,
    AdafaceIr100,
    /// IR-SE-50 in the AdaFace/TFace layout
    #[value(name = "ir-se50")]
    IrSe50,
}

impl Arch {
    pub fn config(self) -> IResNetConfig {
        match self {
            Self::R18 => IResNetConfig::insightface(18),
            Self::R34 => IResNetConfig::insightface(34),
            Self::R50 => IResNetConfig::insightface(50),
            Self::R100 => IResNetConfig::insightface(100),
            Self::AdafaceIr50 => IResNetConfig::adaface(50),
            Self::AdafaceIr100 => IResNetConfig::adaface(100),
            Self::IrSe50 => IResNetConfig::ir_se_50(),
        }
    }
}

/// Options of `cemiface embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Images: photos (the face is found and aligned) or ArcFace-aligned square crops (112×112, or
    /// any square size with --aligned).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Print `{"images", "raw", "embeddings", "cosine"}` as JSON.
    #[arg(long)]
    pub json: bool,
    /// Treat every image as an ArcFace-aligned crop (no detection).
    #[arg(long)]
    pub aligned: bool,
    /// An IResNet checkpoint (.safetensors, .pt, .pth, .ckpt) to use instead of dlib's network.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Architecture of --checkpoint.
    #[arg(long, value_enum, default_value = "adaface-ir50", requires = "checkpoint")]
    pub arch: Arch,
    #[command(flatten)]
    pub assets: AssetsDirArg,
}

fn read_photo(path: &Path) -> anyhow::Result<image::RgbImage> {
    Ok(image_io::read(path, ImageLimits::default())?)
}

fn align_one(
    aligner: &FaceAligner,
    path: &Path,
    ctx: &crate::commands::ctx::JobCtx,
) -> anyhow::Result<cemiface_engine::face::align::AlignedFace> {
    let name = path.display().to_string();
    let face = aligner.align(&read_photo(path)?, &name)?;
    if face.faces_found > 1 {
        crate::say!(
            ctx,
            "note: {} faces found in {name}; using the largest",
            face.faces_found
        );
    }
    Ok(face)
}

/// `cemiface align`.
pub fn run_align(args: AlignArgs, ctx: &crate::commands::ctx::JobCtx) -> anyhow::Result<()> {
    let aligner = FaceAligner::load(&args.assets.assets_dir, &Device::Cpu)?;
    let face = align_one(&aligner, &args.photo, ctx)?;
    image_io::write(&face.arcface, &args.output)?;
    crate::say!(
        ctx,
        "{}: face at ({:.0}, {:.0}) {:.0}×{:.0}, score {:.2} → {}",
        args.photo.display(),
        face.face.x,
        face.face.y,
        face.face.width,
        face.face.height,
        face.face.score,
        args.output.display()
    );
    if let Some(chip) = &args.chip {
        image_io::write(&face.chip, chip)?;
        crate::say!(ctx, "dlib chip → {}", chip.display());
    }
    Ok(())
}

#[derive(Serialize)]
struct EmbedOutput {
    images: Vec<String>,
    raw: Vec<Vec<f32>>,
    embeddings: Vec<Vec<f32>>,
    cosine: Vec<Vec<f32>>,
}

/// `cemiface embed`.
pub fn run_embed(args: EmbedArgs, ctx: &crate::commands::ctx::JobCtx) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let dlib = match &args.checkpoint {
        None => Some(DlibEncoder::load(&args.assets.assets_dir, &dev)?),
        Some(_) => None,
    };
    let iresnet = match &args.checkpoint {
        Some(path) => {
            let vb = checkpoint::var_builder(path, None, &dev)?;
            let net = IResNet::new(args.arch.config(), vb)
                .with_context(|| format!("{} does not fit --arch {:?}", path.display(), args.arch))?;
            Some(IResNetEncoder::new(net, &dev))
        }
        None => None,
    };
    let mut aligner = None;
    let mut raw = Vec::new();
    for path in &args.images {
        let img = read_photo(path)?;
        let crop_given = args.aligned || (img.width() == 112 && img.height() == 112);
        let descriptor = if crop_given {
            if img.width() != img.height() {
                bail!(
                    "{}: an aligned crop must be square, got {}×{}",
                    path.display(),
                    img.width(),
                    img.height()
                );
            }
            let x = image_tensor(&img, img.width() as usize, &dev)?;
            match (&dlib, &iresnet) {
                (Some(d), _) => d.descriptors(&x)?,
                (_, Some(r)) => r.descriptors(&x)?,
                _ => unreachable!("one encoder is loaded"),
            }
        } else {
            if aligner.is_none() {
                aligner = Some(FaceAligner::load(&args.assets.assets_dir, &dev)?);
            }
            let face = align_one(aligner.as_ref().expect("loaded"), path, ctx)?;
            match (&dlib, &iresnet) {
                // dlib's own chip framing: descriptors as dlib computes them
                (Some(d), _) => d
                    .net()
                    .forward(&image_tensor(&face.chip, 150, &dev)?.affine(127.5, 127.5)?)?,
                (_, Some(r)) => r.descriptors(&image_tensor(&face.arcface, 112, &dev)?)?,
                _ => unreachable!("one encoder is loaded"),
            }
        };
        raw.push(descriptor);
    }
    let raw = Tensor::cat(&raw, 0)?;
    let normalized = l2_normalize(&raw)?;
    let out = EmbedOutput {
        images: args.images.iter().map(|p| p.display().to_string()).collect(),
        cosine: cosine_matrix(&raw, &raw)?.to_vec2()?,
        raw: raw.to_vec2()?,
        embeddings: normalized.to_vec2()?,
    };
    if args.json {
        crate::out!(ctx, "{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    let names: Vec<String> = args
        .images
        .iter()
        .map(|p| {
            p.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(4).clamp(6, 24);
    let encoder = dlib
        .as_ref()
        .map(|d| d.name())
        .or(iresnet.as_ref().map(|r| r.name()))
        .unwrap_or_default();
    crate::out!(ctx, "cosine similarity ({encoder}):");
    let header: String = names.iter().map(|n| format!(" {n:>width$}")).collect();
    crate::out!(ctx, "{:width$}{header}", "");
    for (n, row) in names.iter().zip(&out.cosine) {
        let cells: String = row.iter().map(|v| format!(" {v:>width$.3}")).collect();
        crate::out!(ctx, "{n:width$}{cells}");
    }
    if dlib.is_some() {
        crate::out!(
            ctx,
            "L2 distance of raw descriptors (dlib: same person below 0.6):"
        );
        for i in 0..names.len() {
            for j in i + 1..names.len() {
                let d: f32 = out.raw[i]
                    .iter()
                    .zip(&out.raw[j])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
                    .sqrt();
                crate::out!(ctx, "  {} – {}: {d:.3}", names[i], names[j]);
            }
        }
    }
    Ok(())
}
