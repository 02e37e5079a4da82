//! The whole chain at toy scale, as a user runs it: train a generator, generate a labelled set,
//! train a face-recognition model on it (interrupted and resumed), evaluate it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn cemiface(args: &[&str], paths: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cemiface"));
    c.env_remove("RUST_LOG")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn generate_then_train_fr_with_resume_then_eval() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("pipeline");
    let gen = common::tiny_generator(&dir, &assets);
    let ds = dir.join("ds");
    let out = ok(cemiface(
        &[
            "generate",
            "--identities",
            "4",
            "-n",
            "6",
            "--steps",
            "2",
            "--batch",
            "6",
            "--inquiry-copies",
            "1",
            "--rec",
        ],
        &[
            Path::new("--checkpoint"),
            &gen,
            Path::new("--out"),
            &ds,
            Path::new("--assets-dir"),
            &assets,
        ],
    ));
    assert!(String::from_utf8_lossy(&out.stderr).contains("complete: 4 identities, 28 images"));

    // fr-tiny with a small batch and frequent checkpoints.
    let cfg = include_str!("../../../configs/fr-tiny.toml")
        .replace("batch_size = 16", "batch_size = 8")
        .replace("checkpoint_every = 20", "checkpoint_every = 2");
    std::fs::write(dir.join("fr.toml"), cfg).unwrap();
    let train = |run: &Path, extra: &[&str]| {
        let mut args = vec!["train-fr"];
        args.extend(extra);
        cemiface(
            &args,
            &[
                Path::new("--config"),
                &dir.join("fr.toml"),
                Path::new("--data"),
                &ds,
                Path::new("--run-dir"),
                run,
            ],
        )
    };
    let whole = dir.join("fr-whole");
    let out = ok(train(&whole, &["--max-steps", "4"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("28 images of 4 identities") && err.contains("3 steps per epoch"),
        "{err}"
    );
    let reference = losses(&whole);
    assert_eq!(
        reference.iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        reference.iter().all(|l| l.1.is_finite() && l.1 > 0.0),
        "{reference:?}"
    );
    assert!(
        whole.join("loss.png").exists()
            && whole
                .join("checkpoints/step_00000004/backbone.safetensors")
                .exists()
    );

    // Stop at step 2, resume to 4: the same losses as the uninterrupted run.
    let cut = dir.join("fr-cut");
    ok(train(&cut, &["--max-steps", "2"]));
    assert!(
        !ok_status(train(&cut, &["--max-steps", "4"])),
        "must refuse to overwrite without --resume"
    );
    let out = ok(train(&cut, &["--max-steps", "4", "--resume"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resumed from"));
    assert_eq!(losses(&cut), reference);

    // The .rec export trains too.
    ok(cemiface(
        &["train-fr", "--config", "fr-tiny", "--max-steps", "1"],
        &[
            Path::new("--data"),
            &ds.join("train.rec"),
            Path::new("--run-dir"),
            &dir.join("fr-rec"),
        ],
    ));

    // Evaluate the trained backbone on a pair list over the generated set and on the photos .bin.
    let mut pairs = String::new();
    for id in 0..4 {
        pairs += &format!("images/{id:06}/000.png images/{id:06}/001.png 1\n");
        pairs += &format!("images/{id:06}/002.png images/{:06}/003.png 0\n", (id + 1) % 4);
        pairs += &format!("images/{id:06}/004.png images/{id:06}/005.png 1\n");
    }
    std::fs::write(ds.join("pairs.txt"), pairs).unwrap();
    let out = ok(cemiface(
        &["eval", "--json", "--checkpoint"],
        &[
            &whole,
            &ds.join("pairs.txt"),
            &common::repo_root().join("backend/server/tests/golden/photos.bin"),
        ],
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for set in ["pairs", "photos"] {
        let acc = v["sets"][set]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{v}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("step_00000004"));
}

fn ok_status(out: Output) -> bool {
    out.status.success()
}

#[test]
fn train_fr_names_bad_data_and_configs() {
    let dir = common::temp_dir("pipeline-bad");
    std::fs::create_dir_all(dir.join("flat")).unwrap();
    std::fs::write(dir.join("flat/a.png"), b"x").unwrap();
    let out = cemiface(
        &["train-fr", "--config", "fr-tiny"],
        &[
            Path::new("--data"),
            &dir.join("flat"),
            Path::new("--run-dir"),
            &dir.join("run"),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no identity sub-folders"));
    let out = cemiface(
        &["train-fr", "--config", "fr-tiny"],
        &[Path::new("--run-dir"), &dir.join("run")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --data"));
    std::fs::write(
        dir.join("typo.toml"),
        include_str!("../../../configs/fr-tiny.toml").replace("epochs = 10", "epochs = 10\nepoch = 3"),
    )
    .unwrap();
    let out = cemiface(
        &["train-fr", "--config"],
        &[&dir.join("typo.toml"), Path::new("--run-dir"), &dir.join("run")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field") && err.contains("epoch"), "{err}");
}
