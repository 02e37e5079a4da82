//! Logging setup (binaries only; the libraries just emit `tracing` events).

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber. `level` (from `--log-level` / `CEMIFACE_LOG`) is an
/// `EnvFilter` directive such as `info` or `cemiface_server=debug,tower_http=debug`; `RUST_LOG`
/// wins when set.
pub fn init(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("invalid --log-level `{level}`: {e}"))?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .try_init()
        .ok();
    Ok(())
}
