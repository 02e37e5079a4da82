//! Helpers shared by the server's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh, empty folder under the system temp dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cemiface-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Repository root (the workspace), from this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The pinned assets. Their absence fails the test (`scripts/setup.sh --assets-only` installs
/// them); `CEMIFACE_SKIP_MISSING_ASSETS=1` turns that into a skip (`None`) for quick local runs.
pub fn assets() -> Option<PathBuf> {
    let assets = repo_root().join("assets");
    if assets.join("gan-face-generate/weights.tar").exists() {
        Some(assets)
    } else {
        assert!(
            std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
            "assets missing: run scripts/setup.sh --assets-only (or set CEMIFACE_SKIP_MISSING_ASSETS=1 to skip)"
        );
        None
    }
}

/// The demo-64 preset shrunk to 32×32 and a few channels: trains a step in about a second (the
/// same file the browser tests' server is trained from).
pub fn tiny_config() -> String {
    include_str!("../../../../configs/tiny-32.toml").to_owned()
}

/// A tiny generator trained for one step with `cemiface train-diffusion`: its run folder.
pub fn tiny_generator(dir: &std::path::Path, assets: &std::path::Path) -> PathBuf {
    std::fs::write(dir.join("tiny.toml"), tiny_config()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cemiface"))
        .arg("train-diffusion")
        .arg("--config")
        .arg(dir.join("tiny.toml"))
        .arg("--run-dir")
        .arg(dir.join("gen-run"))
        .arg("--assets-dir")
        .arg(assets)
        .args(["--max-steps", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("gen-run")
}

/// A `cemiface serve` process on 127.0.0.1 with an ephemeral port; its log lines are collected.
pub struct Served {
    pub child: std::process::Child,
    pub addr: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    /// Starts the server with `args` after `serve` (plus `--addr 127.0.0.1:0 --device cpu`) and
    /// `env`, and waits until it listens.
    pub fn start(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cemiface"));
        cmd.env_remove("RUST_LOG")
            .env("CEMIFACE_LOG", "info")
            .args(["serve", "--addr", "127.0.0.1:0", "--device", "cpu"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap().to_owned());
                }
                l2.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("server did not listen: {:?}", log.lock().unwrap()));
        Self { child, addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An admin password hash for tests (few iterations: fast), and its password.
pub fn admin_hash() -> (String, &'static str) {
    let pw = "correct horse battery";
    let salt = b"0123456789abcdef";
    let h = cemiface_server::web::auth::pbkdf2_sha256(pw.as_bytes(), salt, 1000);
    (
        format!(
            "pbkdf2-sha256$1000${}${}",
            cemiface_server::web::auth::hex(salt),
            cemiface_server::web::auth::hex(&h)
        ),
        pw,
    )
}

/// `cemiface serve` with the test admin password, the data folder `data` and `generator` as the
/// default generator.
pub fn serve_with_admin(
    data: &std::path::Path,
    assets: &std::path::Path,
    generator: &std::path::Path,
) -> Served {
    let (hash, _) = admin_hash();
    Served::start(
        &[
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--assets-dir".as_ref(),
            assets.as_os_str(),
            "--generator".as_ref(),
            generator.as_os_str(),
            "--site-root".as_ref(),
            data.as_os_str(),
        ],
        // The tests' webhook receivers listen on 127.0.0.1.
        &[
            ("CEMIFACE_ADMIN_PASSWORD_HASH", &hash),
            ("CEMIFACE_WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
    )
}
