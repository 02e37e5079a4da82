//! Slurm through its command-line tools, the interface that stays stable across releases: `sbatch
//! --parsable` to submit, `squeue -t all -r` to read task states (it keeps ended tasks for
//! MinJobAge, 300 s by default), `scancel` to stop. No REST daemon, no accounting database.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// How the server submits to Slurm (`cemiface serve --executor slurm …`).
#[derive(Debug, Clone)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Array tasks per generation (fewer when a job has fewer identities).
    pub shards: usize,
    /// Further sbatch options, e.g. `--gres=gpu:1`.
    pub extra: Vec<String>,
    /// Resubmissions of a failed shard before the job fails.
    pub retries: u32,
}

/// A task's state as Slurm names it, in the groups the executor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    Running,
    /// Ended with exit 0.
    Completed,
    /// Ended otherwise: FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, …
    Ended,
}

impl TaskState {
    /// Slurm's long state name (`squeue %T`).
    pub fn parse(s: &str) -> Self {
        match s {
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESIZING"
            | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT" | "RESV_DEL_HOLD" => Self::Pending,
            "RUNNING" | "COMPLETING" => Self::Running,
            "COMPLETED" => Self::Completed,
            _ => Self::Ended,
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown} (is Slurm's client installed?)"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Submits `script` running in `dir`, as the array `array` (e.g. `0-3`, or `2` for one retried
/// task) or as one plain job; returns the (array) job id.
pub fn sbatch(script: &Path, array: Option<&str>, dir: &Path) -> anyhow::Result<String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(a) = array {
        cmd.arg(format!("--array={a}"));
    }
    let out = run(cmd.arg("--chdir").arg(dir).arg(script))?;
    // `--parsable` prints `id` or `id;cluster`.
    let id = out.trim().split(';').next().unwrap_or("").to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("sbatch answered {out:?}, not a job id");
    }
    Ok(id)
}

/// The state of every task Slurm still knows, by `<array id>_<index>` (and plain job ids).
pub fn task_states() -> anyhow::Result<HashMap<String, (TaskState, String)>> {
    let out = run(Command::new("squeue").args(["-h", "-t", "all", "-r", "-o", "%i|%T"]))?;
    Ok(parse_squeue(&out))
}

fn parse_squeue(out: &str) -> HashMap<String, (TaskState, String)> {
    out.lines()
        .filter_map(|l| l.trim().split_once('|'))
        .map(|(id, st)| {
            (
                id.trim().to_owned(),
                (TaskState::parse(st.trim()), st.trim().to_owned()),
            )
        })
        .collect()
}

/// Cancels tasks (`<array id>_<index>` each).
pub fn scancel(ids: &[String]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    run(Command::new("scancel").args(ids))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_become_task_states() {
        let out = "17_0|COMPLETED\n17_1|RUNNING\n17_2|CANCELLED\n 18_3|PENDING \n19|FAILED\ngarbage\n17_4|COMPLETING\n";
        let m = parse_squeue(out);
        assert_eq!(m["17_0"].0, TaskState::Completed);
        assert_eq!(m["17_1"].0, TaskState::Running);
        assert_eq!(m["17_2"], (TaskState::Ended, "CANCELLED".into()));
        assert_eq!(m["18_3"].0, TaskState::Pending);
        assert_eq!(m["19"].0, TaskState::Ended);
        assert_eq!(m["17_4"].0, TaskState::Running);
        assert_eq!(m.len(), 6);
        for s in [
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
        ] {
            assert_eq!(TaskState::parse(s), TaskState::Ended, "{s}");
        }
    }
}
