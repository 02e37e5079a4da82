//! Scripts that run a sharded `cemiface generate` on a cluster scheduler: an sbatch array script
//! (what the server's Slurm executor submits, and what `generate --print-sbatch N` prints for
//! people who submit by hand) and a Kubernetes Indexed Job (`generate --print-k8s N`). Task i runs
//! `cemiface generate … --shard i/N --no-merge`; the inquiries are selected once before
//! (`--prepare-only`) and the merge runs once after, so every task reads the same identities.

use anyhow::bail;
use serde_json::json;

/// What an sbatch script asks of Slurm besides the array.
#[derive(Debug, Clone, Default)]
pub struct SbatchOptions {
    /// `--job-name` (default `cemiface-generate`).
    pub job_name: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Further `#SBATCH` options, e.g. `--gres=gpu:1`, `--time=04:00:00`.
    pub extra: Vec<String>,
    /// Where task logs go (`%A` array id, `%a` task index); default `cemiface-%A_%a.log`.
    pub output: Option<String>,
    /// The program the tasks run (default: this binary).
    pub program: Option<String>,
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn program(opts: &SbatchOptions) -> String {
    opts.program.clone().unwrap_or_else(|| {
        std::env::current_exe().map_or_else(|_| "cemiface".into(), |p| p.display().to_string())
    })
}

fn check_shards(shards: usize) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&shards) {
        bail!("{shards} shards: use 1 to 10000");
    }
    Ok(())
}

/// An sbatch script for `shards` array tasks running `cemiface generate <argv>` (argv as from
/// `GenerateArgs::to_argv`).
pub fn sbatch(argv: &[String], shards: usize, opts: &SbatchOptions) -> anyhow::Result<String> {
    check_shards(shards)?;
    let prog = shell_quote(&program(opts));
    let args: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    let mut s = header(
        opts,
        "cemiface-generate",
        "cemiface-%A_%a.log",
        Some(&format!("0-{}", shards - 1)),
    );
    s += &format!(
        "# Select the identities once, before submitting:\n#   {prog} generate {} --prepare-only\n\
         # and merge once after every task is done (writes manifest, report and .rec):\n#   {prog} generate {}\n",
        args.join(" "),
        args.join(" ")
    );
    s += "set -euo pipefail\n";
    s += &format!(
        "exec {prog} generate {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{shards}\" --no-merge\n",
        args.join(" ")
    );
    Ok(s)
}

/// `#!/bin/bash` and the `#SBATCH` lines of `opts` (with these defaults, and an array if given).
fn header(opts: &SbatchOptions, name: &str, output: &str, array: Option<&str>) -> String {
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "#SBATCH --job-name={}\n",
        opts.job_name.as_deref().unwrap_or(name)
    );
    if let Some(a) = array {
        s += &format!("#SBATCH --array={a}\n");
    }
    s += &format!("#SBATCH --output={}\n", opts.output.as_deref().unwrap_or(output));
    if let Some(p) = &opts.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(a) = &opts.account {
        s += &format!("#SBATCH --account={a}\n");
    }
    for e in &opts.extra {
        s += &format!("#SBATCH {e}\n");
    }
    s
}

/// An sbatch script for one task running `cemiface <argv>` (a training command).
pub fn sbatch_single(argv: &[String], opts: &SbatchOptions) -> String {
    let mut s = header(opts, "cemiface-train", "cemiface-%j.log", None);
    let args: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    s += "set -euo pipefail\n";
    s += &format!("exec {} {}\n", shell_quote(&program(opts)), args.join(" "));
    s
}

/// A Kubernetes Indexed Job (batch/v1) with `shards` completions; the container image must hold
/// `cemiface` and the data folder must be a volume every pod mounts at the same path.
pub fn k8s_indexed_job(argv: &[String], shards: usize, name: &str) -> anyhow::Result<String> {
    check_shards(shards)?;
    let script = format!(
        "exec cemiface generate {} --shard \"${{JOB_COMPLETION_INDEX}}/{shards}\" --no-merge",
        argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    );
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            "backoffLimitPerIndex": 2,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "generate",
                    "image": "cemiface:latest",
                    "command": ["/bin/sh", "-c", script],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }],
            }},
        },
    });
    Ok(serde_json::to_string_pretty(&job)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        for s in ["plain", "with space", "it's", "$HOME", "a\"b", "", "--m=-1,0.5"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn sbatch_arrays_shard_by_task_id_and_k8s_by_completion_index() {
        let argv = vec!["--out".to_owned(), "/data/my set".to_owned()];
        let opts = SbatchOptions {
            partition: Some("gpu".into()),
            extra: vec!["--gres=gpu:1".into()],
            program: Some("/opt/cemiface".into()),
            ..Default::default()
        };
        let s = sbatch(&argv, 4, &opts).unwrap();
        assert!(
            s.starts_with("#!/bin/bash\n#SBATCH --job-name=cemiface-generate\n#SBATCH --array=0-3\n"),
            "{s}"
        );
        assert!(
            s.contains("#SBATCH --partition=gpu\n#SBATCH --gres=gpu:1\n"),
            "{s}"
        );
        assert!(s.ends_with("exec /opt/cemiface generate --out '/data/my set' --shard \"${SLURM_ARRAY_TASK_ID}/4\" --no-merge\n"), "{s}");
        assert!(sbatch(&argv, 0, &opts).is_err());
        let one = sbatch_single(&["train-fr".to_owned(), "--resume".to_owned()], &opts);
        assert!(
            !one.contains("--array") && one.ends_with("exec /opt/cemiface train-fr --resume\n"),
            "{one}"
        );
        // The manifest is JSON (valid YAML): it reads back with the fields Kubernetes needs.
        let v: serde_json::Value = serde_json::from_str(&k8s_indexed_job(&argv, 8, "gen").unwrap()).unwrap();
        assert_eq!(
            (
                v["kind"].as_str(),
                v["spec"]["completionMode"].as_str(),
                v["spec"]["completions"].as_u64()
            ),
            (Some("Job"), Some("Indexed"), Some(8))
        );
        let cmd = v["spec"]["template"]["spec"]["containers"][0]["command"][2]
            .as_str()
            .unwrap();
        assert!(
            cmd.contains("--shard \"${JOB_COMPLETION_INDEX}/8\" --no-merge"),
            "{cmd}"
        );
    }
}
