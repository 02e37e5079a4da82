//! CemiFace-rs backend: the axum web server (Leptos pages, `/healthz`), and the `cemiface` CLI that
//! drives the engine.

// Leptos renders each page as one nested type; the demo page is deeper than the default 128.
#![recursion_limit = "256"]

pub mod batch_script;
pub mod bench_cli;
pub mod bench_demo;
pub mod cli;
pub mod demo;
pub mod diffusion_cli;
pub mod error;
pub mod eval_cli;
pub mod fr_cli;
pub mod fuzz_cli;
pub mod fuzz_mutate;
pub mod generate_cli;
pub mod health;
pub mod identity_cli;
pub mod jobs;
pub mod latent_cli;
pub mod loadtest_cli;
pub mod loadtest_server;
pub mod progress;
pub mod report_cli;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod web;
