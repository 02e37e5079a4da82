//! `cemiface fuzz`: a seeded mutation fuzzer for every parser that reads outside input. Each target
//! starts from its corpus (`fuzz/corpus/<target>/`, valid files and earlier finds), mutates inputs
//! (bit flips, interesting integers, truncation, deletion, insertion, duplication, splicing,
//! number swaps in text) and feeds them to the parser. Errors are the expected outcome; a panic is
//! a bug: the input is saved to `fuzz/crashes/` and the command exits 1. Same seed, same inputs.
//!
//! | target    | parser                                                                 |
//! |-----------|------------------------------------------------------------------------|
//! | recordio  | `.rec` + `.idx` (`RecordReader`: open, every key, the image keys)      |
//! | bin       | insightface pair sets (`insightface_bin::parse`)                       |
//! | tfjs      | tfjs weights manifests and their shard (`tfjs::load`)                  |
//! | config    | generator and face-recognition TOML configs                            |
//! | protocol  | demo socket messages (JSON) and binary frames                          |
//! | image     | image headers and bodies (`image_io::decode` with its limits)          |

pub mod mutate;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::commands::fuzz::mutate::Mutator;

/// The fuzzed parsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Recordio,
    Bin,
    Tfjs,
    Config,
    Protocol,
    Image,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Self::Recordio,
        Self::Bin,
        Self::Tfjs,
        Self::Config,
        Self::Protocol,
        Self::Image,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Recordio => "recordio",
            Self::Bin => "bin",
            Self::Tfjs => "tfjs",
            Self::Config => "config",
            Self::Protocol => "protocol",
            Self::Image => "image",
        }
    }

    /// Whether inputs are text (numbers in them get swapped for extreme ones too).
    fn text(self) -> bool {
        matches!(self, Self::Config | Self::Protocol)
    }

    /// Feeds one input to the parser; `scratch` is a folder for formats read from files.
    pub fn exec(self, input: &[u8], scratch: &Path) {
        use cemiface_engine::{data::image_io, data::insightface_bin, data::recordio, tfjs};
        match self {
            Self::Recordio => {
                // Input: u32 LE length of the .idx text, the .idx text, then the .rec bytes.
                let (idx, rec) = split(input);
                let path = scratch.join("f.rec");
                if std::fs::write(&path, rec).is_ok() && std::fs::write(scratch.join("f.idx"), idx).is_ok() {
                    if let Ok(mut r) = recordio::RecordReader::open(&path) {
                        for k in r.keys().into_iter().take(64) {
                            let _ = r.read(k);
                        }
                        let _ = r.image_keys();
                    }
                }
            }
            Self::Bin => {
                let _ = insightface_bin::parse(input, "fuzz.bin");
            }
            Self::Tfjs => {
                // Input: u32 LE length of the manifest, the manifest JSON, then the shard `w.bin`.
                let (manifest, shard) = split(input);
                let path = scratch.join("manifest.json");
                if std::fs::write(&path, manifest).is_ok()
                    && std::fs::write(scratch.join("w.bin"), shard).is_ok()
                {
                    let _ = tfjs::load(&path, &candle_core::Device::Cpu);
                }
            }
            Self::Config => {
                let path = scratch.join("c.toml");
                if std::fs::write(&path, input).is_ok() {
                    let p = path.to_string_lossy();
                    let _ = crate::commands::diffusion::load_generator_config(&p);
                    let _ = crate::commands::train_fr::load_fr_config(&p);
                }
            }
            Self::Protocol => {
                use cemiface_app::demo_protocol::{decode_frame, ClientMessage, ServerEvent};
                if let Ok(ClientMessage::Submit(req)) = serde_json::from_slice::<ClientMessage>(input) {
                    if req.validate().is_ok() {
                        let _ = req.targets();
                    }
                }
                let _ = serde_json::from_slice::<ServerEvent>(input);
                let _ = decode_frame(input);
            }
            Self::Image => {
                let limits = image_io::ImageLimits {
                    max_pixels: 4_000_000,
                    max_side: 4096,
                    max_decoded_bytes: 64 << 20,
                };
                let _ = image_io::decode(input, "fuzz", limits);
            }
        }
    }
}

/// A length-prefixed first part and the rest (lengths past the end are clamped).
fn split(input: &[u8]) -> (&[u8], &[u8]) {
    if input.len() < 4 {
        return (&[], input);
    }
    let n = (u32::from_le_bytes(input[..4].try_into().expect("4 bytes")) as usize).min(input.len() - 4);
    input[4..].split_at(n)
}

/// The corpus of `target`: every file of `corpus/<name>/`, sorted by name.
pub fn corpus(dir: &Path, target: Target) -> anyhow::Result<Vec<Vec<u8>>> {
    let d = dir.join(target.name());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
        .with_context(|| format!("cannot read the corpus folder {}", d.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: the corpus is empty", d.display());
    files
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect()
}

/// What one target's run did.
#[derive(Debug)]
pub struct Outcome {
    pub target: Target,
    pub corpus: usize,
    pub execs: u64,
    pub seconds: f64,
    /// Inputs that panicked.
    pub crashes: Vec<Vec<u8>>,
}

/// Runs `target` until `execs` inputs or `time` have passed (whichever is first): the corpus as
/// is, then mutants. Panics are caught and their inputs kept.
pub fn fuzz(
    target: Target,
    seeds: &[Vec<u8>],
    seed: u64,
    execs: u64,
    time: Duration,
    scratch: &Path,
) -> Outcome {
    let mut m = Mutator::new(
        seed ^ (target as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        target.text(),
    );
    let start = Instant::now();
    let (mut n, mut crashes) = (0u64, Vec::new());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while n < execs && start.elapsed() < time {
        let input = match seeds.get(n as usize) {
            Some(s) => s.clone(),
            None => m.mutant(seeds),
        };
        if catch_unwind(AssertUnwindSafe(|| target.exec(&input, scratch))).is_err() && crashes.len() < 16 {
            crashes.push(input);
        }
        n += 1;
    }
    std::panic::set_hook(previous);
    Outcome {
        target,
        corpus: seeds.len(),
        execs: n,
        seconds: start.elapsed().as_secs_f64(),
        crashes,
    }
}

/// Options of `cemiface fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Targets to fuzz (default: all).
    #[arg(long = "target", value_enum)]
    pub targets: Vec<Target>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// At most this many inputs per target.
    #[arg(long, default_value_t = u64::MAX)]
    pub execs: u64,
    /// Seed of the mutations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Corpus folder (one subfolder per target).
    #[arg(long, default_value = "fuzz/corpus")]
    pub corpus: PathBuf,
    /// Where panicking inputs are written.
    #[arg(long, default_value = "fuzz/crashes")]
    pub crashes: PathBuf,
}

pub fn run_fuzz(
    args: FuzzArgs,
    ctx: &crate::commands::ctx::JobCtx,
) -> anyhow::Result<std::process::ExitCode> {
    let targets = if args.targets.is_empty() {
        Target::ALL.to_vec()
    } else {
        args.targets.clone()
    };
    let scratch = std::env::temp_dir().join(format!("cemiface-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    crate::out!(ctx, "| target | corpus | inputs | inputs/s | seconds | panics |");
    crate::out!(ctx, "|---|---|---|---|---|---|");
    let mut failed = false;
    for t in targets {
        let seeds = corpus(&args.corpus, t)?;
        let o = fuzz(
            t,
            &seeds,
            args.seed,
            args.execs,
            Duration::from_secs(args.seconds),
            &scratch,
        );
        crate::out!(
            ctx,
            "| {} | {} | {} | {:.0} | {:.1} | {} |",
            t.name(),
            o.corpus,
            o.execs,
            o.execs as f64 / o.seconds.max(1e-9),
            o.seconds,
            o.crashes.len()
        );
        for c in &o.crashes {
            failed = true;
            std::fs::create_dir_all(&args.crashes)?;
            let digest = crate::web::auth::token_hash(&crate::web::auth::hex(c));
            let path = args.crashes.join(format!("{}-{}", t.name(), &digest[..16]));
            std::fs::write(&path, c).with_context(|| format!("cannot write {}", path.display()))?;
            crate::out!(ctx, "  panic: input saved to {}", path.display());
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}
