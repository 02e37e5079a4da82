//! `cemiface generate` as a user runs it: complete sets, interrupted and resumed runs, shards.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn generate(checkpoint: &Path, out: &Path, assets: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cemiface"));
    c.env_remove("RUST_LOG")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SGE_TASK_ID")
        .env_remove("LSB_JOBINDEX")
        .arg("generate")
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--out")
        .arg(out)
        .arg("--assets-dir")
        .arg(assets)
        .args([
            "--identities",
            "3",
            "-n",
            "4",
            "--steps",
            "3",
            "--batch",
            "2",
            "--m",
            "0,0.5",
        ])
        .args(["--inquiry-copies", "1", "--seed", "11"])
        .args(extra);
    c
}

/// Every file of the data set (images and manifest) with its bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.join("images")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    for f in ["manifest.jsonl", "inquiries.json", "train.rec", "train.idx"] {
        out.insert(f.into(), std::fs::read(root.join(f)).unwrap());
    }
    out
}

#[test]
fn interrupted_and_sharded_runs_equal_an_uninterrupted_one() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("generate");
    let ckpt = common::tiny_generator(&dir, &assets);

    // Uninterrupted reference run.
    let whole = dir.join("whole");
    let out = generate(&ckpt, &whole, &assets, &["--rec"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| 0.00 | 6 |") && stdout.contains("| 0.50 | 6 |"),
        "{stdout}"
    );
    let reference = files(&whole);
    // 3 identities × (4 generated + 1 inquiry copy), each in its identity's folder.
    let images: Vec<_> = reference.keys().filter(|p| p.starts_with("images")).collect();
    assert_eq!(images.len(), 15);
    let manifest: Vec<serde_json::Value> = String::from_utf8_lossy(&reference[Path::new("manifest.jsonl")])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(manifest.len(), 15);
    for e in &manifest {
        let file = e["file"].as_str().unwrap();
        assert!(file.starts_with(&format!("images/{:06}/", e["identity"].as_u64().unwrap())));
        let s = e["similarity"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&s), "{e}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["by_m"]["0.00"]["count"], 6);
    assert_eq!(report["by_m"]["inquiry"]["count"], 3);
    // DCGAN inquiries keep the latent they were drawn from (a latent generator conditions on it;
    // shards and resumed runs read it back from here).
    let inquiries: serde_json::Value =
        serde_json::from_slice(&reference[Path::new("inquiries.json")]).unwrap();
    fn latent_lengths(v: &serde_json::Value, out: &mut Vec<usize>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(z) = m.get("latent").and_then(|z| z.as_array()) {
                    out.push(z.len());
                }
                m.values().for_each(|x| latent_lengths(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| latent_lengths(x, out)),
            _ => {}
        }
    }
    let mut lengths = Vec::new();
    latent_lengths(&inquiries, &mut lengths);
    assert_eq!(lengths, vec![100; 3], "{inquiries}");
    assert!(image::open(whole.join("similarity_histogram.png")).is_ok());
    assert!(std::fs::read_to_string(whole.join("similarity_histogram.svg"))
        .unwrap()
        .contains("</svg>"));
    // The RecordIO export reads back: 15 images labelled with their identity.
    let mut rec = cemiface_engine::data::recordio::RecordReader::open(&whole.join("train.rec")).unwrap();
    let keys = rec.image_keys().unwrap();
    assert_eq!(keys.len(), 15);
    assert_eq!(rec.read(keys[14]).unwrap().label, 2.0);

    // Interrupted run: SIGKILL once the first identity is done (mid-shard), then resume.
    let cut = dir.join("cut");
    let mut child = generate(&ckpt, &cut, &assets, &["--rec"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !cut.join("parts/000000.jsonl").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.join("manifest.jsonl").exists());
    // A different setting is refused rather than mixed into the set.
    let out = generate(&ckpt, &cut, &assets, &["--rec", "--eta", "0.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
    let out = generate(&ckpt, &cut, &assets, &["--rec"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 of 3 identities left") || err.contains("1 of 3 identities left"),
        "{err}"
    );
    assert_eq!(
        files(&cut),
        reference,
        "resumed set differs from the uninterrupted one"
    );

    // Two shards, run one after the other, give the same set; a lone shard does not finish it.
    let sharded = dir.join("sharded");
    let out = generate(&ckpt, &sharded, &assets, &["--rec", "--prepare-only"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sharded.join("inquiries.json").exists() && !sharded.join("parts").exists());
    let out = generate(&ckpt, &sharded, &assets, &["--rec", "--shard", "1/2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sharded.join("shards/1-of-2.done").exists() && !sharded.join("manifest.jsonl").exists());
    let out = generate(&ckpt, &sharded, &assets, &["--rec"])
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .env("SLURM_ARRAY_TASK_MAX", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files(&sharded), reference);
}

#[test]
fn bad_options_are_named() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("generate-bad");
    let run = |extra: &[&str]| {
        let out = generate(&dir.join("nope"), &dir.join("out"), &assets, extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--shard", "2/2"]).contains("0 ≤ i < N"));
    assert!(run(&["--inquiries", "/no/such/place"]).contains("not a folder, a .rec file"));
    assert!(run(&[]).contains("not a checkpoint folder"));
}
