//! `/admin/jobs/:id`: one job: progress with ETA, loss / learning-rate / similarity curves, sample
//! grids, checkpoints and other artifacts, logs, and cancel / pause / resume / clone with changes.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;

use crate::admin_client::{get, job_events, poll, send};
use crate::admin_protocol::{ArtifactView, JobDetail, JobEvent, JobState, LogLine, Metrics, Session};
use crate::components::line_chart::{LineChart, Series};
use crate::demo_protocol::ModelInfo;
use crate::pages::admin::{act, progress_text};
use crate::units::bytes;

/// Curves of a job, by chart: (title, metric names).
const CHARTS: [(&str, &[&str]); 6] = [
    ("Loss (total and MSE)", &["loss", "mse"]),
    // SimMat on its own scale: it is much smaller than the MSE once λ weighs it.
    ("SimMat term", &["sim_mat"]),
    ("Learning rate", &["lr"]),
    (
        "Similarity error (|m − s| to the target, |1 − s| to the identity)",
        &["sim_error", "rec_error"],
    ),
    ("Batch accuracy", &["accuracy"]),
    ("Throughput (images/s)", &["images_per_s"]),
];

fn series(metrics: &Metrics, names: &[&str]) -> Vec<Series> {
    names
        .iter()
        .filter_map(|n| {
            Some((
                (*n).to_owned(),
                metrics.get(*n)?.iter().map(|&(s, v)| (s as f64, v)).collect(),
            ))
        })
        .collect()
}

#[component]
pub fn AdminJobPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0));
    let job: RwSignal<Option<JobDetail>> = RwSignal::new(None);
    let live = RwSignal::new(false);
    let metrics: RwSignal<Metrics> = RwSignal::new(Metrics::new());
    let csrf: StoredValue<String> = StoredValue::new(String::new());
    let msg: RwSignal<Option<String>> = RwSignal::new(None);
    let note: RwSignal<Option<String>> = RwSignal::new(None);
    // The sample grid shown large (None: the newest).
    let selected: RwSignal<Option<String>> = RwSignal::new(None);
    Effect::new(move |_| {
        spawn_local(async move {
            match get::<Session>("/api/admin/session").await {
                Ok(s) => csrf.set_value(s.csrf),
                Err(e) => msg.set(Some(e.message)),
            }
        });
        let fetch = move |detail: bool| {
            let id = id();
            spawn_local(async move {
                if detail {
                    if let Ok(v) = get::<JobDetail>(&format!("/api/admin/jobs/{id}")).await {
                        job.set(Some(v));
                    }
                }
                if let Ok(v) = get::<Metrics>(&format!("/api/admin/jobs/{id}/metrics")).await {
                    metrics.set(v);
                }
            });
        };
        // Progress, phase, state and log lines arrive on the event socket; a new artifact (a
        // checkpoint, a sample grid) fetches the job again.
        job_events(
            live,
            move |e| {
                if e.job() != id() {
                    return;
                }
                let applied = job
                    .try_update(|j| match (j, &e) {
                        (Some(d), JobEvent::Log { line, .. }) => {
                            d.logs.push(LogLine {
                                at: js_sys::Date::now() / 1000.0,
                                line: line.clone(),
                            });
                            true
                        }
                        (Some(d), e) => d.job.apply(e) && !matches!(e, JobEvent::State { .. }),
                        (None, _) => false,
                    })
                    .unwrap_or(false);
                if !applied {
                    fetch(true);
                }
            },
            move || fetch(true),
        );
        // Polling: the curves every 1.5 s; the job itself too while the socket is down, else
        // every 15 s.
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        poll(Duration::from_millis(1500), move || {
            let n = ticks.get();
            ticks.set(n.wrapping_add(1));
            fetch(!live.get_untracked() || n.is_multiple_of(10));
        });
    });
    let state = move || job.with(|j| j.as_ref().map(|d| d.job.state.as_str()).unwrap_or("").to_owned());
    let kind_is = move |k: &str| job.with(|j| j.as_ref().is_some_and(|d| d.job.kind == k));
    let fraction = move || job.with(|j| j.as_ref().map_or(0.0, |d| d.job.progress.fraction));
    let file_url = move |path: &str| format!("/api/admin/jobs/{}/files/{path}", id());
    let artifacts = move |kind: &'static str| {
        move || {
            job.with(|j| {
                j.as_ref()
                    .map(|d| {
                        d.artifacts
                            .iter()
                            .filter(|x| x.kind == kind)
                            .cloned()
                            .collect::<Vec<ArtifactView>>()
                    })
                    .unwrap_or_default()
            })
        }
    };
    view! {
        // The job and, while it runs, how far it is (readable from another tab).
        <leptos_meta::Title text=move || job.with(|j| match j {
            Some(d) if d.job.state == JobState::Running => format!("{:.0}% · Job {} (running)", d.job.progress.fraction * 100.0, id()),
            Some(d) => format!("Job {} ({})", id(), d.job.state),
            None => format!("Job {} (…)", id()),
        })/>
        <section class="admin-job">
            <p><a href="/admin">"← All jobs"</a></p>
            <h1>{move || format!("Job #{} · {}", id(), job.with(|j| j.as_ref().map(|d| d.job.kind.clone()).unwrap_or_default()))}</h1>
            {move || msg.get().map(|m| view! { <p class="error" role="alert">{m}</p> })}
            {move || note.get().map(|m| view! { <p id="job-note" class="notice" role="status">{m}</p> })}
            <div class="card">
                <p>"State: " <strong id="job-state">{state}</strong>
                    {move || job.with(|j| j.as_ref().and_then(|d| d.job.error.clone()).map(|e| view! { <span class="error">" — "{e}</span> }))}</p>
                <div class="bar" role="progressbar" aria-label="job progress" aria-valuemin="0" aria-valuemax="100"
                    aria-valuenow=move || format!("{:.0}", fraction() * 100.0)>
                    <div class="fill" style=move || format!("width: {:.1}%", fraction() * 100.0)></div>
                </div>
                <p id="job-progress" class="small">{move || job.with(|j| j.as_ref().map(|d| progress_text(&d.job)).unwrap_or_default())}</p>
                <div class="row actions">
                    <button class="secondary" prop:disabled=move || !matches!(state().as_str(), "running" | "queued")
                        on:click=move |_| act(csrf, id(), "pause", msg)>"Pause"</button>
                    <button class="secondary" prop:disabled=move || !matches!(state().as_str(), "paused" | "interrupted" | "failed" | "cancelled")
                        on:click=move |_| act(csrf, id(), "resume", msg)>"Resume"</button>
                    <button class="danger" prop:disabled=move || !matches!(state().as_str(), "running" | "queued" | "paused" | "interrupted")
                        on:click=move |_| act(csrf, id(), "cancel", msg)>"Cancel"</button>
                    <a class="button secondary" id="clone" href=move || format!("/admin?clone={}", id())>"Clone with changes"</a>
                    {move || (kind_is("generate") && state() == "succeeded").then(|| view! {
                        <a class="button" id="download" href=format!("/api/admin/jobs/{}/dataset.tar", id()) download="">"Download archive (.tar)"</a>
                    })}
                    {move || (kind_is("train-diffusion") && state() == "succeeded").then(|| view! {
                        <button id="use-as-demo" on:click=move |_| {
                            if !crate::pages::admin::confirmed("Serve this job's newest checkpoint in the public demo now? \
                                Visitors' uploaded photos are forgotten; the server's --generator returns at its next restart.") {
                                return;
                            }
                            let url = format!("/api/admin/jobs/{}/use-as-demo", id());
                            spawn_local(async move {
                                match send::<ModelInfo>("POST", &url, None, Some(&csrf.get_value())).await {
                                    Ok(m) => note.set(Some(format!("The demo now uses this job's checkpoint at step {} ({}).", m.step, m.checkpoint))),
                                    Err(e) => msg.set(Some(e.message)),
                                }
                            });
                        }>"Use as demo generator"</button>
                    })}
                </div>
                // A generation run on Slurm: one row per shard (its task, attempts, state).
                {move || {
                    let shards = job.with(|j| j.as_ref().map(|d| d.job.slurm.clone()).unwrap_or_default());
                    (!shards.is_empty()).then(|| view! {
                        <div class="table-scroll"><table id="slurm-shards" class="small">
                            <caption>"Slurm tasks"</caption>
                            <thead><tr><th>"Shard"</th><th>"Task"</th><th>"Retries"</th><th>"State"</th></tr></thead>
                            <tbody>
                                {shards.into_iter().map(|t| view! {
                                    <tr>
                                        <td>{t.shard}</td>
                                        <td><code>{t.slurm_id}</code></td>
                                        <td>{t.attempt}</td>
                                        <td>{t.state}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table></div>
                    })
                }}
                <details><summary>"Parameters"</summary>
                    <pre id="job-spec">{move || job.with(|j| j.as_ref().map(|d| serde_json::to_string_pretty(&d.job.spec).unwrap_or_default()).unwrap_or_default())}</pre>
                </details>
            </div>
            <div class="charts">
                // Only the curves this kind of job records.
                {move || CHARTS.iter().filter(|(_, names)| metrics.with(|m| !series(m, names).is_empty())).map(|(title, names)| {
                    let names: &'static [&'static str] = names;
                    view! { <LineChart title=*title series=Signal::derive(move || metrics.with(|m| series(m, names)))/> }
                }).collect_view()}
            </div>
            <h2>"Sample grids and plots"</h2>
            // The chosen grid large, with its columns labelled (a training grid: rows are held-out
            // identities, columns the inquiry and each m); the others as thumbnails to pick from.
            {move || {
                let grids = artifacts("sample-grid")();
                let shown = selected.get().or_else(|| grids.last().map(|a| a.path.clone()))?;
                let step = grids.iter().find(|a| a.path == shown).and_then(|a| a.step);
                Some(view! {
                    <figure id="grid-large" class="grid-large">
                        {step.map(|_| view! {
                            <div class="grid-columns" aria-hidden="true">
                                {crate::admin_protocol::sample_grid_columns().into_iter().map(|c| view! { <span>{c}</span> }).collect_view()}
                            </div>
                        })}
                        <img src=file_url(&shown) alt=match step {
                            Some(s) => format!("sample grid at step {s}: rows are held-out identities; columns the inquiry, then m = -1, 0, +1"),
                            None => "a sample of the generated data set".to_owned(),
                        }/>
                        <figcaption>{match step { Some(s) => format!("Step {s} · rows: held-out identities"), None => "Data set sample".to_owned() }}
                            " · " <a href=file_url(&shown) target="_blank">"open full size"</a></figcaption>
                    </figure>
                })
            }}
            <div class="grids" id="sample-grids">
                {move || artifacts("sample-grid")().into_iter().rev().chain(artifacts("plot")()).map(|a| {
                    let path = a.path.clone();
                    let url = file_url(&path);
                    // Training grids (one per checkpoint step) switch the large view; others open.
                    let is_grid = a.kind == "sample-grid" && a.step.is_some();
                    let caption = match (a.kind.as_str(), a.step) {
                        ("plot", _) => path.rsplit('/').next().unwrap_or("").to_owned(),
                        (_, Some(s)) => format!("step {s}"),
                        _ => "data set sample".to_owned(),
                    };
                    view! {
                        <figure class="shot">
                            <a href=url.clone() target="_blank" class="grid-link" on:click=move |ev| {
                                if is_grid {
                                    ev.prevent_default();
                                    selected.set(Some(path.clone()));
                                }
                            }><img src=url.clone() alt=format!("sample grid, {caption}")/></a>
                            <figcaption>{caption}</figcaption>
                        </figure>
                    }
                }).collect_view()}
            </div>
            <h2>"Artifacts"</h2>
            <div class="table-scroll"><table id="artifacts">
                <thead><tr><th>"Kind"</th><th>"Path"</th><th>"Step"</th><th>"Size"</th></tr></thead>
                <tbody>
                    {move || job.with(|j| j.as_ref().map(|d| d.artifacts.clone()).unwrap_or_default()).into_iter().map(|a| {
                        let path = a.path.clone();
                        let link = match (a.kind.as_str(), a.step) {
                            // A checkpoint is a folder: it downloads as a tar.
                            ("checkpoint", Some(step)) => Some((format!("/api/admin/jobs/{}/checkpoints/{step}", id()), format!("{path} (.tar)"))),
                            ("checkpoint" | "dataset", _) => None,
                            _ => Some((file_url(&path), path.clone())),
                        };
                        view! {
                            <tr>
                                <td>{a.kind.clone()}</td>
                                <td>{match link {
                                    Some((href, text)) => view! { <a href=href download="">{text}</a> }.into_any(),
                                    None => view! { <code>{path.clone()}</code> }.into_any(),
                                }}</td>
                                <td>{a.step.map(|s| s.to_string()).unwrap_or_default()}</td>
                                <td>{bytes(a.bytes)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table></div>
            <h2>"Log"</h2>
            <pre id="job-log" class="log">{move || job.with(|j| j.as_ref().map(|d| {
                d.logs.iter().map(|l| l.line.as_str()).collect::<Vec<_>>().join("\n")
            }).unwrap_or_default())}</pre>
        </section>
    }
}
