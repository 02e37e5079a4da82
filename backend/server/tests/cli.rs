//! The `cemiface` binary as a user runs it: serving, signals, errors, the assets check.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cemiface() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cemiface"));
    c.env_remove("RUST_LOG").env("CEMIFACE_LOG", "info");
    c
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_answers_healthz_and_stops_cleanly_on_sigterm() {
    let dir = common::temp_dir("cli-serve");
    let mut child = cemiface()
        .args(["serve", "--addr", "127.0.0.1:0", "--device", "cpu"])
        .arg("--assets-dir")
        .arg(&dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--site-root")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(dir.join("data").is_dir(), "data dir not created");
    let res = http_get(&addr, "/healthz");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        res.contains(r#""status":"ok""#) && res.contains(r#""device":"cpu""#),
        "{res}"
    );
    assert!(!res.contains(r#""gpu""#), "a CPU server reports no GPU: {res}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM received")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("server stopped")), "{rest:?}");
}

#[test]
fn asking_for_cuda_on_a_cpu_build_fails_with_a_clear_message() {
    let out = cemiface()
        .args(["serve", "--device", "cuda", "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built without CUDA") && err.contains("--features cuda"),
        "{err}"
    );
}

/// `device-check --device cpu`: the device-generic kernels (what a GPU runs) against the fast CPU
/// kernels on every parity row, then the speed rows; JSON and markdown written.
#[test]
fn device_check_on_the_cpu_checks_the_generic_path_and_times_it() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("device-check");
    // A preset whose E_id checkpoint and `.rec` are not on this machine (as paper-112's are not on
    // a GPU box): its training step is timed with stand-ins of the same cost, and says so.
    let tiny = common::tiny_config().replace("id_dim = 128", "id_dim = 64");
    let standin = format!(
        "{}[data]\nsource = \"recordio\"\npath = \"/nonexistent/train.rec\"\n\n[encoder]\nkind = \"iresnet\"\n\
         checkpoint = \"/nonexistent/ir.ckpt\"\n\n[encoder.arch]\nlayout = \"adaface\"\ndepth = 18\nembedding_dim = 64\nwidth = 8\n",
        &tiny[..tiny.find("[data]").unwrap()]
    );
    std::fs::write(dir.join("standin.toml"), standin).unwrap();
    let presets = format!("tiny-32,{}", dir.join("standin.toml").display());
    let out = cemiface()
        .args([
            "device-check",
            "--device",
            "cpu",
            "--presets",
            &presets,
            "--batch",
            "2",
            "--iters",
            "1",
            "--json",
        ])
        .arg(dir.join("dc.json"))
        .arg("--markdown")
        .arg(dir.join("dc.md"))
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dc.json")).unwrap()).unwrap();
    assert_eq!(v["device"], "cpu");
    let parity = v["parity"].as_array().unwrap();
    let names: Vec<&str> = parity.iter().map(|p| p["what"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(
        names[0].contains("UNet forward")
            && names[1].contains("DDIM-20")
            && names[4].contains("dlib")
            && names[5].contains("latent"),
        "{names:?}"
    );
    for p in parity {
        assert_eq!(p["pass"], true, "{p}");
        assert!(p["rel_diff"].as_f64().unwrap() < 1e-4, "{p}");
    }
    let speed = v["speed"].as_array().unwrap();
    assert_eq!(speed.len(), 6);
    assert_eq!(
        speed[5]["what"],
        "training step (E_id with random weights, DCGAN faces)"
    );
    assert!(speed.iter().all(|s| s["per_second"].as_f64().unwrap() > 0.0));
    let md = std::fs::read_to_string(dir.join("dc.md")).unwrap();
    assert!(
        md.contains("| tiny-32 DDIM-20 sample (seed 7) |") && md.contains("| training step | tiny-32 | 2 |"),
        "{md}"
    );

    let out = cemiface()
        .args(["device-check", "--device", "cuda"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("built without CUDA"));
}

/// scripts/gpu-check.sh end to end as a dry run on the CPU (`--quick --device cpu`): every stage
/// runs and the summary has the parity table, generation images/s and training steps/s.
#[test]
fn gpu_check_script_dry_run_on_the_cpu() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("gpu-check");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/gpu-check.sh"))
        .args([
            "--quick",
            "--device",
            "cpu",
            "--bin",
            env!("CARGO_BIN_EXE_cemiface"),
            "--assets",
        ])
        .arg(&assets)
        .arg("--out")
        .arg(&dir)
        .env_remove("OUT")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("gpu-check.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let health: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("healthz.json")).unwrap()).unwrap();
    assert_eq!(health["device"], "cpu");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["generate_images_per_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert!(
        summary["latent_train_steps_per_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert!(summary["device_check"]["parity"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["pass"] == true));
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        md.contains("| generate, latent-dcgan, 1 × 4 images |") && md.contains("steps/s"),
        "{md}"
    );
}

#[test]
fn bad_flags_are_rejected_before_anything_starts() {
    let out = cemiface().args(["serve", "--device", "tpu"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auto, cpu, cuda or cuda:N"));
    let out = cemiface()
        .args(["serve", "--addr", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn assets_command_lists_missing_assets_and_fails() {
    let dir = common::temp_dir("cli-assets");
    let out = cemiface()
        .arg("assets")
        .arg("--assets-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dlib-resnet") && text.contains("NOT INSTALLED"),
        "{text}"
    );
    assert!(text.contains("scripts/setup.sh"), "{text}");

    let out = cemiface()
        .args(["assets", "--json"])
        .arg("--assets-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["dcgan-faces"]["files"]["gan-face-generate/weights.tar"],
        "missing"
    );
}

fn photo_assets() -> Option<std::path::PathBuf> {
    let dir = common::repo_root().join("assets");
    if dir.join("face_recognition/obama.jpg").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
        "assets missing: run scripts/setup.sh --assets-only (or set CEMIFACE_SKIP_MISSING_ASSETS=1 to skip)"
    );
    None
}

#[test]
fn align_writes_the_arcface_crop_and_the_dlib_chip() {
    let Some(assets) = photo_assets() else { return };
    let dir = common::temp_dir("cli-align");
    let out = cemiface()
        .arg("align")
        .arg(assets.join("face_recognition/obama.jpg"))
        .arg("-o")
        .arg(dir.join("crop.png"))
        .arg("--chip")
        .arg(dir.join("chip.png"))
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(image::image_dimensions(dir.join("crop.png")).unwrap(), (112, 112));
    assert_eq!(image::image_dimensions(dir.join("chip.png")).unwrap(), (150, 150));

    std::fs::write(dir.join("notes.jpg"), b"just text").unwrap();
    let out = cemiface()
        .arg("align")
        .arg(dir.join("notes.jpg"))
        .args(["-o", "/dev/null", "--assets-dir"])
        .arg(&assets)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notes.jpg") && err.contains("not an image"), "{err}");
}

#[test]
fn embed_json_has_descriptors_embeddings_and_the_cosine_matrix() {
    let Some(assets) = photo_assets() else { return };
    let photos = ["obama.jpg", "obama2.jpg", "biden.jpg"].map(|n| assets.join("face_recognition").join(n));
    let out = cemiface()
        .args(["embed", "--json"])
        .args(&photos)
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 3);
    assert_eq!(v["raw"][0].as_array().unwrap().len(), 128);
    let norm: f64 = v["embeddings"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum();
    assert!((norm - 1.0).abs() < 1e-4);
    let cos = |i: usize, j: usize| v["cosine"][i][j].as_f64().unwrap();
    assert!((cos(0, 0) - 1.0).abs() < 1e-4);
    assert!(
        cos(0, 1) > cos(0, 2) && cos(0, 1) > cos(1, 2),
        "Obama pair must be the most similar"
    );
    let l2: f64 = (0..128)
        .map(|k| (v["raw"][0][k].as_f64().unwrap() - v["raw"][1][k].as_f64().unwrap()).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(l2 < 0.55, "Obama–Obama L2 {l2}");
}

#[test]
fn embed_rejects_a_checkpoint_that_does_not_fit_the_architecture() {
    let ckpt = common::repo_root().join("backend/engine/tests/golden/iresnet18_insightface_w8.safetensors");
    let dir = common::temp_dir("cli-embed-ckpt");
    image::RgbImage::new(112, 112).save(dir.join("crop.png")).unwrap();
    let out = cemiface()
        .args(["embed", "--arch", "r18", "--checkpoint"])
        .arg(&ckpt)
        .arg(dir.join("crop.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not fit --arch R18") && err.contains("conv1.weight"),
        "{err}"
    );
}

#[test]
fn eval_scores_a_verification_set_built_from_the_photos() {
    use cemiface_engine::data::insightface_bin::{write, PairSet};
    let Some(assets) = photo_assets() else { return };
    let dir = common::temp_dir("cli-eval");
    let mut crops = Vec::new();
    for name in ["obama", "obama2", "obama3", "biden"] {
        let out_path = dir.join(format!("{name}.png"));
        let out = cemiface()
            .arg("align")
            .arg(assets.join(format!("face_recognition/{name}.jpg")))
            .arg("-o")
            .arg(&out_path)
            .arg("--assets-dir")
            .arg(&assets)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        crops.push(std::fs::read(&out_path).unwrap());
    }
    let pairs = [
        (0, 1, true),
        (0, 2, true),
        (1, 2, true),
        (0, 3, false),
        (1, 3, false),
        (2, 3, false),
    ];
    let mut set = PairSet {
        images: Vec::new(),
        same: Vec::new(),
    };
    for _ in 0..2 {
        for &(a, b, same) in &pairs {
            set.images.push(crops[a].clone());
            set.images.push(crops[b].clone());
            set.same.push(same);
        }
    }
    write(&dir.join("photos.bin"), &set).unwrap();
    let out = cemiface()
        .args(["eval", "--json"])
        .arg(dir.join("photos.bin"))
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sets"]["photos"]["accuracy"], 1.0, "{v}");
    assert_eq!(v["average"], 1.0);
    let t = v["sets"]["photos"]["threshold"].as_f64().unwrap();
    assert!((0.0..4.0).contains(&t));

    std::fs::write(
        dir.join("cut.bin"),
        &std::fs::read(dir.join("photos.bin")).unwrap()[..500],
    )
    .unwrap();
    let out = cemiface()
        .arg("eval")
        .arg(dir.join("cut.bin"))
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.bin") && err.contains("truncated"), "{err}");
}

#[test]
fn eval_on_a_bin_pickled_by_python_equals_numpy_on_the_same_embeddings() {
    // tests/golden/photos.bin: crops of the six public-domain photos pickled by
    // scripts/reference/insightface_bin_fixture.py as insightface does; photos_bin.json: numpy's
    // 10-fold result on the engine's embeddings of it (same script, `verify`).
    let Some(assets) = photo_assets() else { return };
    let golden = common::repo_root().join("backend/server/tests/golden");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("photos_bin.json")).unwrap()).unwrap();
    let dir = common::temp_dir("cli-eval-py");
    let out = cemiface()
        .args(["eval", "--json"])
        .arg(golden.join("photos.bin"))
        .arg("--save-embeddings")
        .arg(dir.join("emb.json"))
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The embeddings numpy saw are the ones the engine computes now.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("emb.json")).unwrap()).unwrap();
    let ours = saved["photos"]["embeddings"].as_array().unwrap();
    let theirs = expected["embeddings"].as_array().unwrap();
    assert_eq!(
        (ours.len(), saved["photos"]["same"].as_array().unwrap().len()),
        (30, 15)
    );
    for (a, b) in ours.iter().zip(theirs) {
        for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
            assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-3);
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["accuracy", "std", "threshold"] {
        let (a, b) = (
            v["sets"]["photos"][key].as_f64().unwrap(),
            expected[key].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{key}: {a} vs numpy {b}");
    }
}

#[test]
fn hash_password_prints_a_hash_the_server_accepts() {
    let run = |input: &str| {
        let mut child = cemiface()
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("a long passphrase\n");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(cemiface_server::web::auth::verify_password(
        hash.trim(),
        "a long passphrase"
    ));
    assert!(!cemiface_server::web::auth::verify_password(
        hash.trim(),
        "a long passphrasE"
    ));
    let out = run("short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));
}
