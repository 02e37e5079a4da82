//! The commands of `cemiface`, one file each, run the same way from a terminal (`cli`) and from the
//! job runner (`jobs::exec`): each takes its option struct and a [`ctx::JobCtx`] that receives its
//! progress, logs, metrics, artifacts and results, and that can stop it at a step boundary.
//!
//! A job is a command line: `jobs::exec` writes the job's argv once and either parses it here (the
//! local executor) or hands it to `sbatch` (the Slurm executor), so the two run the same flags and
//! every flag is defined in exactly one place, its option struct.

pub mod batch_script;
pub mod bench;
pub mod ctx;
pub mod device_check;
pub mod diffusion;
pub mod eval;
pub mod fuzz;
pub mod generate;
pub mod identity;
pub mod latent;
pub mod loadtest;
pub mod report_control;
pub mod sample_grid;
pub mod train_fr;

use std::path::PathBuf;

use clap::{Args, FromArgMatches};

/// The assets folder option, shared by every command that reads models.
#[derive(Debug, Clone, Args)]
pub struct AssetsDirArg {
    /// Folder of the pinned model assets, as filled by `scripts/setup.sh`.
    #[arg(long, env = "CEMIFACE_ASSETS_DIR", default_value = "assets")]
    pub assets_dir: PathBuf,
}

/// The run-folder options of the training commands (`train-diffusion`, `train-fr`).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Folder for checkpoints, metrics.jsonl, loss.png and the resolved config.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Continue from the newest checkpoint in --run-dir.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps in total (default: the whole run of the config).
    #[arg(long)]
    pub max_steps: Option<u64>,
}

/// A command line being written for a command (its flags after `cemiface <name>`): what a job
/// runs. The local executor parses it with the command's own clap definition, the Slurm executor
/// puts it in a batch script, so both run exactly the same options.
#[derive(Debug, Clone)]
pub struct Argv {
    pub name: &'static str,
    pub flags: Vec<String>,
}

impl Argv {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            flags: Vec::new(),
        }
    }

    /// `--flag value`.
    pub fn opt(&mut self, flag: &str, value: impl std::fmt::Display) -> &mut Self {
        self.flags.push(format!("--{flag}"));
        self.flags.push(value.to_string());
        self
    }

    /// A positional argument.
    pub fn arg(&mut self, value: impl std::fmt::Display) -> &mut Self {
        self.flags.push(value.to_string());
        self
    }

    /// `--flag` when `on`.
    pub fn switch(&mut self, flag: &str, on: bool) -> &mut Self {
        if on {
            self.flags.push(format!("--{flag}"));
        }
        self
    }

    /// The whole command line after the binary's name.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.name.to_owned())
            .chain(self.flags.iter().cloned())
            .collect()
    }

    /// The command's options, parsed exactly as `cemiface <name> <flags>` would parse them.
    pub fn parse<T: Args + FromArgMatches>(&self) -> anyhow::Result<T> {
        let cmd = T::augment_args(clap::Command::new(self.name).no_binary_name(true));
        let invalid = |e: clap::Error| {
            // clap's first line says what is wrong; the rest is terminal advice (`--help`).
            let text = e.to_string();
            let what = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            anyhow::anyhow!(
                "the job's command line `{}` is invalid: {what}",
                self.argv().join(" ")
            )
        };
        let matches = cmd.try_get_matches_from(&self.flags).map_err(invalid)?;
        T::from_arg_matches(&matches).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_command_line_parses_as_the_cli_would() {
        let mut a = Argv::new("eval");
        a.opt("batch", 8)
            .arg("lfw.bin")
            .switch("json", true)
            .switch("raw", false);
        assert_eq!(a.argv(), ["eval", "--batch", "8", "lfw.bin", "--json"]);
        let args: eval::EvalArgs = a.parse().unwrap();
        assert_eq!((args.batch, args.json, args.sets.len()), (8, true, 1));
        // Defaults come from the same definition as the terminal's.
        assert!(matches!(args.arch, identity::Arch::IrSe50));
        let bad = Argv::new("eval")
            .arg("lfw.bin")
            .opt("batch", "many")
            .parse::<eval::EvalArgs>()
            .unwrap_err();
        let bad = format!("{bad:#}");
        assert!(
            bad.contains("`eval lfw.bin --batch many` is invalid: invalid value 'many' for '--batch"),
            "{bad}"
        );
        assert!(!bad.contains("--help"), "{bad}");
    }
}
