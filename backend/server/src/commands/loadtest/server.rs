//! The server `cemiface loadtest` starts when it is not given one: this binary's `serve` on a free
//! 127.0.0.1 port, with a fresh data folder, and per-address limits opened wide enough for a soak
//! whose clients all come from one address. Stopped (and its folder removed) when dropped.

use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::commands::loadtest::LoadtestArgs;

pub struct Spawned {
    child: Child,
    pub base: String,
    data_dir: std::path::PathBuf,
}

impl Spawned {
    pub fn start(args: &LoadtestArgs, ctx: &crate::commands::ctx::JobCtx) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data_dir = std::env::temp_dir().join(format!("cemiface-loadtest-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let sockets = (args.viewers + args.hostile + 16).to_string();
        let uploads = (4 * (args.uploads + args.bombs) + 16).to_string();
        let exe = std::env::current_exe().context("cannot find this program to start the server")?;
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        let child = Command::new(exe)
            .arg("serve")
            .args(["--addr", &format!("127.0.0.1:{port}"), "--device", "cpu"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--assets-dir")
            .arg(&args.assets.assets_dir)
            .arg("--generator")
            .arg(&args.generator)
            .args([
                "--demo-sockets-per-address",
                &sockets,
                "--uploads-per-minute",
                &uploads,
            ])
            .env_remove("CEMIFACE_TRUSTED_PROXY_HEADER")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start `cemiface serve`")?;
        crate::out!(
            ctx,
            "started cemiface serve on 127.0.0.1:{port} (log: {})",
            data_dir.join("server.log").display()
        );
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data_dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
