//! `cemiface model-info`, `train-diffusion` and `sample` as a user runs them.

mod common;

use std::process::Command;

fn cemiface() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cemiface"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn model_info_reports_both_presets() {
    let out = cemiface()
        .args(["model-info", "demo-64", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"], 14_981_571);
    assert_eq!(v["ddim_timesteps"][0], 950);
    assert_eq!(v["ddim_timesteps"][19], 0);
    let demo_gflops = v["flops_per_image"].as_u64().unwrap() as f64 / 1e9;
    assert!((5.0..20.0).contains(&demo_gflops), "{demo_gflops} GFLOPs");
    let out = cemiface()
        .args(["model-info", "paper-112", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 93,563,910 in the UNet (the spec's ≈ 93.6 M) + 1,050,624 in the condition path.
    assert_eq!(v["params"], 94_614_534);
    // Conv-dominated: at 112² and base 128 a forward pass costs tens of GFLOPs (demo-64: ~11).
    let gflops = v["flops_per_image"].as_u64().unwrap() as f64 / 1e9;
    assert!((50.0..120.0).contains(&gflops), "{gflops} GFLOPs");
}

#[test]
fn config_files_are_strict() {
    let dir = common::temp_dir("strict-config");
    let text =
        include_str!("../../../configs/demo-64.toml").replace("lambda = 0.05", "lambda = 0.05\nlamda = 0.1");
    std::fs::write(dir.join("typo.toml"), text).unwrap();
    let out = cemiface()
        .args(["model-info"])
        .arg(dir.join("typo.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field") && err.contains("lamda"), "{err}");
    let out = cemiface()
        .args(["model-info", "no-such-preset"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("not a preset (latent-dcgan, demo-64, paper-112, tiny-32)"));
}

#[test]
fn train_then_refuse_to_overwrite_then_resume_then_sample() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("train-cli");
    std::fs::write(dir.join("tiny.toml"), common::tiny_config()).unwrap();
    let train = |extra: &[&str]| {
        cemiface()
            .arg("train-diffusion")
            .arg("--config")
            .arg(dir.join("tiny.toml"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .arg("--assets-dir")
            .arg(&assets)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = train(&["--max-steps", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("run/checkpoints/step_00000001/state.json").exists());
    assert!(dir.join("run/config.toml").exists());

    let out = train(&["--max-steps", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));

    let out = train(&["--max-steps", "2", "--resume"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resumed from"));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2]);

    let out = cemiface()
        .args([
            "sample",
            "--m-sweep",
            "--steps",
            "2",
            "--seed",
            "3",
            "--checkpoint",
        ])
        .arg(dir.join("run"))
        .arg("--inquiry")
        .arg(assets.join("face_recognition/obama.jpg"))
        .arg("-o")
        .arg(dir.join("sweep.png"))
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        image::image_dimensions(dir.join("sweep.png")).unwrap(),
        (32 * 6, 32)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("achieved similarity"))
            .count(),
        5
    );

    let out = cemiface()
        .args(["sample", "--m", "1.5", "--checkpoint"])
        .arg(dir.join("run"))
        .arg("--inquiry")
        .arg(assets.join("face_recognition/obama.jpg"))
        .args(["-o", "/dev/null", "--assets-dir"])
        .arg(&assets)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside [-1, 1]"));
}

/// `--init`: a run starts from a guided-diffusion checkpoint (the engine's golden file, written in
/// torch's layout by scripts/reference/guided_diffusion_ckpt.py) and says what it loaded; another
/// architecture or the latent preset is refused before any step.
#[test]
fn train_from_a_guided_diffusion_checkpoint() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("train-init");
    let ckpt = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/golden/guided_diffusion_small.pt");
    // tiny-32 with the checkpoint's channel multipliers.
    std::fs::write(
        dir.join("gd.toml"),
        common::tiny_config().replace("channel_mult = [1, 2]", "channel_mult = [1, 1]"),
    )
    .unwrap();
    std::fs::write(dir.join("tiny.toml"), common::tiny_config()).unwrap();
    let train = |config: &str, run: &str| {
        cemiface()
            .args(["train-diffusion", "--max-steps", "1", "--config"])
            .arg(if config.ends_with(".toml") {
                dir.join(config)
            } else {
                config.into()
            })
            .arg("--run-dir")
            .arg(dir.join(run))
            .arg("--init")
            .arg(&ckpt)
            .arg("--assets-dir")
            .arg(&assets)
            .output()
            .unwrap()
    };
    let out = train("gd.toml", "run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("initialised 142 UNet tensors") && err.contains("ε half"),
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/init.json")).unwrap()).unwrap();
    assert_eq!(report["loaded"], 142);
    assert_eq!(report["eps_half_of_learned_sigma"], true);
    assert!(report["fresh"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k.as_str().unwrap().starts_with("cond.")));
    assert!(dir.join("run/checkpoints/step_00000001/ema.safetensors").exists());

    let out = train("tiny.toml", "run-other");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("guided_diffusion_small.pt") && err.contains("shapes differ"),
        "{err}"
    );
    assert!(!dir.join("run-other/checkpoints").exists(), "no step was taken");

    let out = train("latent-dcgan", "run-latent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the latent preset has no UNet"),
        "{err}"
    );
}

/// demo-64 itself (batch and learning rate scaled for a test): the loss goes down on the DCGAN stream,
/// and a run killed with SIGKILL after its step-4 checkpoint resumes with the losses an uninterrupted
/// run has.
#[test]
fn demo_64_lowers_the_loss_and_resumes_exactly_after_a_kill() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("demo64-kill");
    let cfg = include_str!("../../../configs/demo-64.toml")
        .replace("batch_size = 8", "batch_size = 2")
        .replace("lr = 0.0002", "lr = 0.001")
        .replace("checkpoint_every = 250", "checkpoint_every = 2")
        // μ from 8 reference faces, not 4,096 (each start draws them again).
        .replace("centre_reference = 4096", "centre_reference = 8");
    assert!(
        cfg.contains("centre_reference = 8 "),
        "the preset's centre_reference line changed"
    );
    std::fs::write(dir.join("demo.toml"), cfg).unwrap();
    let train = |run: &str, extra: &[&str]| {
        let mut c = cemiface();
        c.arg("train-diffusion")
            .arg("--config")
            .arg(dir.join("demo.toml"))
            .arg("--run-dir")
            .arg(dir.join(run))
            .arg("--assets-dir")
            .arg(&assets)
            .args(["--max-steps", "6"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    };
    let metrics = |run: &str| -> Vec<(u64, f64, f64)> {
        std::fs::read_to_string(dir.join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["step"].as_u64().unwrap(),
                    v["loss"].as_f64().unwrap(),
                    v["mse"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let out = train("a", &[]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = metrics("a");
    assert_eq!(a.len(), 6);
    eprintln!("uninterrupted: {a:?}");
    assert!(a[4].2 + a[5].2 < a[0].2 + a[1].2, "MSE did not go down: {a:?}");

    let mut child = train("b", &[]).spawn().unwrap();
    let ckpt = dir.join("b/checkpoints/step_00000004/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !ckpt.exists() {
        assert!(std::time::Instant::now() < deadline, "no step-4 checkpoint");
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no chance to tidy up
    child.wait().unwrap();
    let out = train("b", &["--resume"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("step 4)"));
    let b = metrics("b");
    assert_eq!(b.iter().map(|m| m.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.1 - y.1).abs() <= 1e-4 * x.1.abs().max(1.0),
            "step {}: {} vs {}",
            x.0,
            x.1,
            y.1
        );
    }
}

#[test]
fn latent_preset_trains_resumes_and_samples_centred() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("latent");
    // The shipped preset, shrunk: same sections and keys, so a renamed key fails here too.
    let cfg = include_str!("../../../configs/latent-dcgan.toml")
        .replace("hidden = 384", "hidden = 32")
        .replace("emb_dim = 192", "emb_dim = 16")
        .replace("blocks = 4", "blocks = 1")
        .replace("batch_size = 256", "batch_size = 16")
        .replace("sim_mat_batch = 8", "sim_mat_batch = 2")
        .replace("anchors = 2048", "anchors = 16")
        .replace("mixes = 10", "mixes = 3")
        .replace("checkpoint_every = 500", "checkpoint_every = 1")
        .replace("steps = 100\n", "steps = 2\n");
    assert!(cfg.contains("anchors = 16") && cfg.contains("hidden = 32"));
    std::fs::write(dir.join("latent.toml"), cfg).unwrap();
    let train = |extra: &[&str]| {
        cemiface()
            .args(["train-diffusion", "--config"])
            .arg(dir.join("latent.toml"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .arg("--assets-dir")
            .arg(&assets)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = train(&["--max-steps", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ckpt = dir.join("run/checkpoints/step_00000002");
    for f in [
        "ema.safetensors",
        "identity_mean.safetensors",
        "anchors.safetensors",
        "state.json",
    ] {
        assert!(ckpt.join(f).exists(), "{f} missing");
    }
    assert!(dir.join("run/bank.safetensors").exists());
    // Loss curves are redrawn at every checkpoint.
    let chart = image::open(dir.join("run/loss.png")).unwrap();
    assert_eq!((chart.width(), chart.height()), (800, 400));
    let svg = std::fs::read_to_string(dir.join("run/loss.svg")).unwrap();
    assert!(
        svg.contains("SimMat") && svg.contains("MSE"),
        "the legend names the curves"
    );
    let out = train(&["--max-steps", "3", "--resume"]);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resumed from") && log.contains("step 2"), "{log}");
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let out = cemiface()
        .args(["sample", "--checkpoint"])
        .arg(dir.join("run"))
        .arg("--inquiry")
        .arg(assets.join("face_recognition/obama.jpg"))
        .arg("--assets-dir")
        .arg(&assets)
        .args(["--m-sweep", "--steps", "5", "-o"])
        .arg(dir.join("sweep.png"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let achieved = stdout
        .lines()
        .filter(|l| l.contains("achieved similarity") && l.ends_with("(centred))"));
    assert_eq!(achieved.count(), 5, "{stdout}");
    assert!(
        stdout.contains("inquiry latent: G(z_a) reaches similarity"),
        "{stdout}"
    );
    let img = image::open(dir.join("sweep.png")).unwrap();
    assert_eq!((img.width(), img.height()), (64 * 6, 64));
    // report-control on a latent model measures G(z_a), the ceiling of m = 1, and shows it on the sheet.
    let out = cemiface()
        .args([
            "report-control",
            "--no-photos",
            "--inquiries",
            "1",
            "--steps",
            "2",
            "--m",
            "0,1",
            "--json",
        ])
        .arg("--checkpoint")
        .arg(dir.join("run"))
        .arg("--out")
        .arg(dir.join("report"))
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, j) in v["judges"].as_object().unwrap() {
        let inv = j["inversion"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} lacks the inversion: {j}"));
        assert!((-1.0..=1.0).contains(&inv), "{name}: {inv}");
    }
    let sheet = image::open(dir.join("report/contact_sheet.png")).unwrap();
    assert_eq!(
        sheet.width(),
        104 + 4 + 4 * 68,
        "a name column, then inquiry, G(z_a), m = 0, m = 1"
    );
}

/// The shipped model was trained with the preset as it is in `configs/` (its `state.json` saves
/// the run's config), so `train-diffusion --config latent-dcgan` reproduces what ships.
#[test]
fn shipped_model_is_the_latent_preset() {
    use cemiface_engine::diffusion::latent::config::LatentConfig;
    let preset: LatentConfig = toml::from_str(include_str!("../../../configs/latent-dcgan.toml")).unwrap();
    let state: serde_json::Value =
        serde_json::from_str(include_str!("../../../models/latent-dcgan/state.json")).unwrap();
    let shipped: LatentConfig = serde_json::from_value(state["config"].clone()).unwrap();
    assert_eq!(shipped, preset);
    assert_eq!(state["step"].as_u64(), Some(preset.train.steps as u64));
}
