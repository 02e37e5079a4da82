//! CemiFace-rs backend: the axum web server (Leptos pages, demo websocket, admin and remote APIs,
//! `/healthz`) and the `cemiface` CLI, both driving `cemiface-engine`.
//!
//! # Layout
//!
//! ```text
//! cli.rs, cli/   the clap command line: parses, then calls a command (nothing imports it)
//! commands/      one file per command (train-diffusion, generate, train-fr, eval, …), run alike from
//!                the terminal and from jobs through `commands::ctx::JobCtx`
//! web/           router and state, errors, health, admin sessions / API tokens / rate limits
//! demo/          the public demo: uploads, the sampling queue, the websocket stream
//! jobs/          the durable job queue (SQLite), its runner and executors (local, Slurm), the admin
//!                and remote APIs, webhooks
//! telemetry.rs   tracing set-up
//! ```
//!
//! Dependencies point down: `cli` → `commands`, `web::router` → `demo`, `jobs` → `web`, `commands`.

// Leptos renders each page as one nested type; the demo page is deeper than the default 128.
#![recursion_limit = "256"]

pub mod cli;
pub mod commands;
pub mod demo;
pub mod jobs;
pub mod telemetry;
pub mod web;
