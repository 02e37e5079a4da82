//! `cemiface generate`: a labelled synthetic data set from a trained generator (Algorithm 2), in
//! shards that can run as a cluster array job, resumable after any interruption.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context};
use cemiface_engine::data::image_io::{self, ImageLimits};
use cemiface_engine::device::{ComputeDevice, DeviceRequest};
use cemiface_engine::diffusion::generator::Generator;
use cemiface_engine::synth::generation::{
    generate_identity, read_manifest, write_atomic, DatasetDir, GenerationSettings, ImageFormat, Shard,
};
use cemiface_engine::synth::inquiry::{default_threshold, select_until, Inquiry, InquirySource};
use cemiface_engine::synth::report::{write_recordio, write_summary};
use clap::Args;

use crate::commands::ctx::{JobCtx, Stop};
use crate::commands::AssetsDirArg;

/// `i/N`: this process does identities i, i+N, i+2N, …
#[derive(Debug, Clone, Copy)]
pub struct ShardArg(pub Shard);

impl FromStr for ShardArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected i/N, e.g. 0/8")?;
        let (index, count) = (
            i.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{i}` is not a number"))?,
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{n}` is not a number"))?,
        );
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 ≤ i < N"));
        }
        Ok(Self(Shard { index, count }))
    }
}

/// The shard from the usual array-job variables (Slurm, SGE, LSF), else 0/1.
pub fn shard_from_env(get: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let num = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok());
    let pick = if let (Some(id), Some(min), Some(max)) = (
        num("SLURM_ARRAY_TASK_ID"),
        num("SLURM_ARRAY_TASK_MIN"),
        num("SLURM_ARRAY_TASK_MAX"),
    ) {
        Some((
            id.checked_sub(min),
            num("SLURM_ARRAY_TASK_COUNT").unwrap_or(max + 1 - min),
        ))
    } else if let (Some(id), Some(last)) = (num("SGE_TASK_ID"), num("SGE_TASK_LAST")) {
        Some((
            id.checked_sub(num("SGE_TASK_FIRST").unwrap_or(1)),
            last + 1 - num("SGE_TASK_FIRST").unwrap_or(1),
        ))
    } else if let (Some(id), Some(end)) = (num("LSB_JOBINDEX"), num("LSB_JOBINDEX_END")) {
        Some((id.checked_sub(1), end))
    } else {
        None
    };
    match pick {
        None => Ok(Shard { index: 0, count: 1 }),
        Some((Some(index), count)) if index < count => Ok(Shard { index, count }),
        Some(_) => Err("the array-job variables do not describe a valid task index".into()),
    }
}

/// Options of `cemiface generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// The generator: a checkpoint folder or a run folder (its newest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output folder (created; an existing one is resumed if its settings match).
    #[arg(long)]
    pub out: PathBuf,
    /// Inquiry identities: a folder of aligned crops (one per sub-folder or file), an insightface
    /// `.rec` (first image per label), `dcgan` (the DCGAN stream) or `random` (unit vectors).
    #[arg(long, default_value = "dcgan")]
    pub inquiries: String,
    /// Number of inquiry identities.
    #[arg(long, default_value_t = 100)]
    pub identities: usize,
    /// Greedy uniqueness: keep an inquiry only if its cosine to every kept one is below this
    /// [default: 0.3 for 512-d AdaFace-style E_id, 0.9 for dlib's 128-d network].
    #[arg(long)]
    pub unique_threshold: Option<f32>,
    /// Generated images per identity.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub images_per_identity: usize,
    /// Similarity target(s), comma-separated; image k uses the (k mod len)-th.
    #[arg(long, value_delimiter = ',', default_value = "0", allow_hyphen_values = true)]
    pub m: Vec<f32>,
    /// DDIM steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// DDIM η in [0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub eta: f64,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Run seed: image k of identity i uses the noise seed derived from (seed, i, k).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Copies of each inquiry face added to its identity [default: 5, the paper's oversampling; 0
    /// for random identities].
    #[arg(long)]
    pub inquiry_copies: Option<usize>,
    /// Image format of the files.
    #[arg(long, value_enum, default_value = "png")]
    pub format: FormatArg,
    /// Also pack the finished set as insightface train.rec / train.idx.
    #[arg(long)]
    pub rec: bool,
    /// Do identities i, i+N, …: `i/N` [default: from SLURM_ARRAY_TASK_ID / SGE_TASK_ID /
    /// LSB_JOBINDEX, else 0/1].
    #[arg(long)]
    pub shard: Option<ShardArg>,
    /// Only select the inquiry identities and record the settings, then exit: run this once before
    /// starting an array job, so every shard reads the same `inquiries.json`.
    #[arg(long)]
    pub prepare_only: bool,
    /// Do not write the merged outputs (manifest, report, .rec) when the last identity is done:
    /// for the shards of a scheduler run whose submitter merges once at the end.
    #[arg(long)]
    pub no_merge: bool,
    /// Print an sbatch script running this generation as an N-task Slurm array (run the
    /// `--prepare-only` line it shows first), then exit.
    #[arg(long, value_name = "N", conflicts_with_all = ["shard", "print_k8s"])]
    pub print_sbatch: Option<usize>,
    /// Print a Kubernetes Indexed Job (JSON, which kubectl reads as YAML) running this generation
    /// as N completions, then exit.
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub print_k8s: Option<usize>,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    pub raw: bool,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
    #[command(flatten)]
    pub assets: AssetsDirArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Png,
    Jpeg,
}

fn inquiry_source(spec: &str, assets: &std::path::Path) -> anyhow::Result<InquirySource> {
    Ok(match spec {
        "dcgan" => InquirySource::Dcgan {
            weights: assets.join("gan-face-generate/weights.tar"),
            faces: Some(assets.to_path_buf()),
        },
        "random" => InquirySource::Random,
        p if p.ends_with(".rec") => InquirySource::Recordio { path: p.into() },
        p if std::path::Path::new(p).is_dir() => InquirySource::Folder { path: p.into() },
        p => bail!("--inquiries {p}: not a folder, a .rec file, `dcgan` or `random`"),
    })
}

impl GenerateArgs {
    /// The command-line arguments after `cemiface generate` that give these options (without
    /// `--shard`, `--prepare-only`, `--no-merge` and the print options, which the caller adds).
    pub fn to_argv(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut opt = |k: &str, v: String| {
            a.push(format!("--{k}"));
            a.push(v);
        };
        opt("checkpoint", self.checkpoint.display().to_string());
        opt("out", self.out.display().to_string());
        opt("inquiries", self.inquiries.clone());
        opt("identities", self.identities.to_string());
        if let Some(t) = self.unique_threshold {
            opt("unique-threshold", t.to_string());
        }
        opt("images-per-identity", self.images_per_identity.to_string());
        opt(
            "m",
            self.m.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","),
        );
        opt("steps", self.steps.to_string());
        opt("eta", self.eta.to_string());
        opt("batch", self.batch.to_string());
        opt("seed", self.seed.to_string());
        if let Some(c) = self.inquiry_copies {
            opt("inquiry-copies", c.to_string());
        }
        opt(
            "format",
            match self.format {
                FormatArg::Png => "png".into(),
                FormatArg::Jpeg => "jpeg".into(),
            },
        );
        opt("device", self.device.to_string());
        opt("assets-dir", self.assets.assets_dir.display().to_string());
        if self.rec {
            a.push("--rec".into());
        }
        if self.raw {
            a.push("--raw".into());
        }
        a
    }
}

/// `cemiface generate`.
pub fn run_generate(args: GenerateArgs, ctx: &JobCtx) -> anyhow::Result<()> {
    let mut args = args;
    if args.print_sbatch.is_some() || args.print_k8s.is_some() {
        // Tasks run in another folder, maybe on another machine: absolute paths.
        for p in [&mut args.out, &mut args.checkpoint, &mut args.assets.assets_dir] {
            *p = std::path::absolute(&*p).with_context(|| format!("cannot make {} absolute", p.display()))?;
        }
    }
    if let Some(n) = args.print_sbatch {
        ctx.output(
            crate::commands::batch_script::sbatch(&args.to_argv(), n, &Default::default())?.trim_end(),
        );
        return Ok(());
    }
    if let Some(n) = args.print_k8s {
        crate::out!(
            ctx,
            "{}",
            crate::commands::batch_script::k8s_indexed_job(&args.to_argv(), n, "cemiface-generate")?
        );
        return Ok(());
    }
    let shard = match args.shard {
        Some(s) => s.0,
        None => shard_from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?,
    };
    let source = inquiry_source(&args.inquiries, &args.assets.assets_dir)?;
    let dev = ComputeDevice::select(args.device)?;
    let gen = Generator::load(&args.checkpoint, args.raw, &args.assets.assets_dir, &dev.device)?;
    let encoder = gen.encoder();
    let copies = args.inquiry_copies.unwrap_or(if source == InquirySource::Random {
        0
    } else {
        cemiface_app::components::launch_form::DEFAULT_INQUIRY_COPIES
    });
    let settings = GenerationSettings {
        images_per_identity: args.images_per_identity,
        m: args.m.clone(),
        steps: args.steps,
        eta: args.eta,
        seed: args.seed,
        inquiry_copies: copies,
        format: match args.format {
            FormatArg::Png => ImageFormat::Png,
            FormatArg::Jpeg => ImageFormat::Jpeg,
        },
        checkpoint: args.checkpoint.display().to_string(),
        encoder: encoder.name(),
    };
    settings.validate()?;
    let dir = DatasetDir::new(&args.out);
    std::fs::create_dir_all(&dir.root).with_context(|| format!("creating {}", dir.root.display()))?;
    let settings_path = dir.root.join("generate.json");
    if settings_path.exists() {
        let text = std::fs::read_to_string(&settings_path)?;
        let old: GenerationSettings = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a generation settings file", settings_path.display()))?;
        if old != settings {
            bail!(
                "{} was generated with other settings ({}): resume with the same options or choose another --out",
                dir.root.display(),
                serde_json::to_string(&old)?
            );
        }
    } else {
        write_atomic(
            &settings_path,
            serde_json::to_string_pretty(&settings)?.as_bytes(),
        )?;
    }
    let stop = || ctx.requested().is_some();
    let Some(inquiries) = load_or_select_inquiries(
        &args,
        &dir,
        &source,
        encoder.as_ref(),
        &gen,
        &dev.device,
        &stop,
        ctx,
    )?
    else {
        // Stopped during the selection: nothing was written, a resume selects again.
        return Err(ctx.requested().unwrap_or(Stop::Cancelled).into());
    };
    if copies > 0 && inquiries.iter().any(|q| q.image.is_none()) {
        bail!("--inquiry-copies {copies}: random identities have no face to copy; pass --inquiry-copies 0");
    }
    if args.prepare_only {
        crate::say!(
            ctx,
            "prepared {}: {} identities in inquiries.json; start the shards with the same options",
            dir.root.display(),
            inquiries.len()
        );
        return Ok(());
    }
    let todo: Vec<usize> = shard
        .identities(inquiries.len())
        .filter(|&i| !dir.identity_done(i))
        .collect();
    let in_shard = shard.identities(inquiries.len()).count();
    ctx.log(format!(
        "shard {}/{}: {} of {} identities left, {} images each at m = {:?}, {} DDIM steps on {}",
        shard.index,
        shard.count,
        todo.len(),
        in_shard,
        settings.images_per_identity,
        settings.m,
        settings.steps,
        dev
    ));
    // Progress counts the whole shard: a resumed run starts at the images finished before it.
    let total = (in_shard * settings.images_per_identity) as u64;
    let mut done = ((in_shard - todo.len()) * settings.images_per_identity) as u64;
    ctx.progress(done, total, "img");
    for &id in &todo {
        let finished = generate_identity(
            &gen,
            encoder.as_ref(),
            &inquiries[id],
            id,
            &settings,
            args.batch,
            &dir,
            &dev.device,
            |s| {
                // The DDIM steps of the batch in flight (a second bar on a terminal).
                ctx.detail(s.step as u64 + 1, settings.steps as u64, "step");
                match ctx.requested() {
                    Some(_) => ControlFlow::Break(()),
                    None => ControlFlow::Continue(()),
                }
            },
            |n| {
                done += n as u64;
                ctx.progress(done, total, "img");
            },
        )?;
        if finished.is_none() {
            // Stopped inside this identity: its images are regenerated on resume.
            return Err(ctx.requested().unwrap_or(Stop::Cancelled).into());
        }
    }
    write_atomic(&dir.shard_marker(shard), b"")?;
    if args.no_merge {
        ctx.log("shard done; the merge is left to the submitter (--no-merge)");
    } else if (0..inquiries.len()).all(|i| dir.identity_done(i)) {
        ctx.phase("merging: manifest, report and sample grid");
        let entries = read_manifest(&dir, inquiries.len())?;
        let report = write_summary(&dir, &entries, &encoder.name())?;
        if args.rec {
            write_recordio(&dir, &entries)?;
            ctx.artifact("recordio", &dir.root.join("train.rec"), None);
        }
        let grid = crate::commands::sample_grid::dataset_grid(&dir.root, &entries, 8, 8)?;
        ctx.artifact("sample-grid", &grid, None);
        ctx.artifact("report", &dir.root.join("report.json"), None);
        ctx.artifact("plot", &dir.root.join("similarity_histogram.png"), None);
        ctx.artifact("dataset", &dir.root, None);
        crate::out!(
            ctx,
            "| m | images | mean similarity | std | min | max |\n|---|---|---|---|---|---|"
        );
        for (m, s) in &report.by_m {
            crate::out!(
                ctx,
                "| {m} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.count,
                s.mean,
                s.std,
                s.min,
                s.max
            );
        }
        ctx.log(format!(
            "complete: {} identities, {} images → {} (manifest.jsonl, report.json, similarity_histogram.png{})",
            report.identities,
            report.images,
            dir.root.display(),
            if args.rec { ", train.rec" } else { "" }
        ));
    } else {
        ctx.log("shard done; other shards still have identities left");
    }
    Ok(())
}

/// Reads `inquiries.json` (and the faces in `inquiries/`), or selects the identities and writes
/// them, so every shard and every resume works on the same identities. None: `stop` said so
/// during the selection (nothing written).
#[allow(clippy::too_many_arguments)]
fn load_or_select_inquiries(
    args: &GenerateArgs,
    dir: &DatasetDir,
    source: &InquirySource,
    encoder: &dyn cemiface_engine::identity::encoder::IdentityEncoder,
    gen: &Generator,
    device: &candle_core::Device,
    stop: &dyn Fn() -> bool,
    ctx: &JobCtx,
) -> anyhow::Result<Option<Vec<Inquiry>>> {
    let path = dir.root.join("inquiries.json");
    let face = |i: usize| dir.root.join("inquiries").join(format!("{i:06}.png"));
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        let mut list: Vec<Inquiry> =
            serde_json::from_str(&text).with_context(|| format!("{}: malformed", path.display()))?;
        for (i, q) in list.iter_mut().enumerate() {
            if face(i).exists() {
                q.image = Some(image_io::read(&face(i), ImageLimits::default())?);
            }
        }
        return Ok(Some(list));
    }
    let threshold = args
        .unique_threshold
        .unwrap_or_else(|| default_threshold(encoder));
    let (list, stats) = select_until(
        source,
        args.identities,
        threshold,
        encoder,
        gen.image_size(),
        args.seed,
        device,
        stop,
    )?;
    if stats.stopped {
        return Ok(None);
    }
    crate::say!(ctx,
        "inquiries: {} unique identities from {} candidates ({} rejected as look-alikes at cosine ≥ {threshold})",
        list.len(),
        stats.considered,
        stats.rejected_similar
    );
    if list.len() < args.identities {
        crate::say!(
            ctx,
            "note: the source holds only {} identities unique at {threshold}",
            list.len()
        );
    }
    for (i, q) in list.iter().enumerate() {
        if let Some(img) = &q.image {
            write_atomic(
                &face(i),
                &cemiface_engine::synth::generation::encode(img, ImageFormat::Png)?,
            )?;
        }
    }
    write_atomic(&path, serde_json::to_string(&list)?.as_bytes())?;
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_from_arguments_and_array_job_variables() {
        assert_eq!(ShardArg::from_str("2/8").unwrap().0, Shard { index: 2, count: 8 });
        assert!(ShardArg::from_str("8/8").is_err() && ShardArg::from_str("x").is_err());
        fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        }
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
        ];
        assert_eq!(
            shard_from_env(env(&slurm)).unwrap(),
            Shard { index: 3, count: 10 }
        );
        let sge = [
            ("SGE_TASK_ID", "1"),
            ("SGE_TASK_FIRST", "1"),
            ("SGE_TASK_LAST", "4"),
        ];
        assert_eq!(shard_from_env(env(&sge)).unwrap(), Shard { index: 0, count: 4 });
        let lsf = [("LSB_JOBINDEX", "4"), ("LSB_JOBINDEX_END", "4")];
        assert_eq!(shard_from_env(env(&lsf)).unwrap(), Shard { index: 3, count: 4 });
        assert_eq!(shard_from_env(env(&[])).unwrap(), Shard { index: 0, count: 1 });
        assert!(shard_from_env(env(&[("SGE_TASK_ID", "0"), ("SGE_TASK_LAST", "3")])).is_err());
    }
}
