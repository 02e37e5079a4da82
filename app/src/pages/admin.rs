//! `/admin`: log in, launch jobs from presets with validated fields, watch the job list (progress
//! bars with ETA), the system panel, and manage API keys.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use serde_json::json;

use crate::admin_client::{call, get, job_events, poll, send};
use crate::admin_protocol::spec::JobSpec;
use crate::admin_protocol::{
    CreatedKey, JobEvent, JobState, JobView, KeyView, Presets, Session, SystemStatus,
};
use crate::components::launch_form::{
    defaults, fields, from_spec, generation_plan, to_spec, FieldType, Values, KINDS,
};
use crate::units::{bytes, eta};

/// The admin area: the login form until a session exists, then the dashboard.
#[component]
pub fn AdminPage() -> impl IntoView {
    let csrf: RwSignal<Option<String>> = RwSignal::new(None);
    let checked = RwSignal::new(false);
    let note: RwSignal<Option<String>> = RwSignal::new(None);
    // No admin password on this server: say so up front, without a login form that cannot work.
    let disabled = RwSignal::new(false);
    Effect::new(move |_| {
        spawn_local(async move {
            match get::<Session>("/api/admin/session").await {
                Ok(s) => csrf.set(Some(s.csrf)),
                Err(e) if e.status == 401 => {}
                Err(e) => {
                    disabled.set(e.code == "admin_disabled");
                    note.set(Some(e.message));
                }
            }
            checked.set(true);
        });
    });
    view! {
        <leptos_meta::Title text="Admin"/>
        <section class="admin">
            <h1>"Admin"</h1>
            {move || note.get().map(|n| view! { <p class="notice" role="alert">{n}</p> })}
            {move || match (checked.get(), csrf.get()) {
                (false, _) => view! { <p class="muted">"Checking the session…"</p> }.into_any(),
                (true, None) if disabled.get() => view! { <p id="admin-disabled" class="muted">
                    "The public demo needs no login; this page is for the server's operator."
                </p> }.into_any(),
                (true, None) => view! { <Login csrf note/> }.into_any(),
                (true, Some(token)) => view! { <Dashboard csrf=token/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn Login(csrf: RwSignal<Option<String>>, note: RwSignal<Option<String>>) -> impl IntoView {
    let password = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let pw = password.get_untracked();
        spawn_local(async move {
            match send::<Session>("POST", "/api/admin/login", Some(&json!({"password": pw})), None).await {
                Ok(s) => {
                    note.set(None);
                    csrf.set(Some(s.csrf));
                }
                Err(e) => note.set(Some(e.message)),
            }
        });
    };
    view! {
        <form id="login" class="card" on:submit=submit>
            <label for="admin-password">"Admin password"</label>
            <div class="row">
                <input id="admin-password" type="password" autocomplete="current-password"
                    prop:value=move || password.get()
                    on:input=move |ev| password.set(event_target_value(&ev))/>
                <button type="submit" id="login-button">"Log in"</button>
            </div>
        </form>
    }
}

#[component]
fn Dashboard(csrf: String) -> impl IntoView {
    let jobs: RwSignal<Vec<JobView>> = RwSignal::new(vec![]);
    let system: RwSignal<Option<SystemStatus>> = RwSignal::new(None);
    let live = RwSignal::new(false);
    let csrf = StoredValue::new(csrf);
    let refresh = move || {
        spawn_local(async move {
            if let Ok(a) = get::<Vec<JobView>>("/api/admin/jobs").await {
                jobs.set(a);
            }
            if let Ok(s) = get::<SystemStatus>("/api/admin/system").await {
                system.set(Some(s));
            }
        });
    };
    Effect::new(move |_| {
        // Running jobs update from the event socket; a job the list lacks, a new artifact or a
        // state change fetches the list again (queue counts change with it).
        job_events(
            live,
            move |e| {
                let applied = jobs
                    .try_update(|js| js.iter_mut().any(|j| j.apply(&e)))
                    .unwrap_or(false);
                if !applied || matches!(e, JobEvent::State { .. }) {
                    refresh();
                }
            },
            refresh,
        );
        // Polling is the fallback: every second without the socket, every 15 s with it (memory).
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        poll(Duration::from_millis(1000), move || {
            let n = ticks.get();
            ticks.set(n.wrapping_add(1));
            if !live.get_untracked() || n.is_multiple_of(15) {
                refresh();
            }
        });
    });
    let logout = move |_| {
        spawn_local(async move {
            let _ = call("POST", "/api/admin/logout", None, Some(&csrf.get_value())).await;
            let _ = window().location().reload();
        });
    };
    view! {
        <div class="row"><button class="secondary" id="logout" on:click=logout>"Log out"</button>
            <span id="live" class="small muted" role="status">{move || if live.get() { "live updates" } else { "polling" }}</span></div>
        <SystemPanel system/>
        <h2>"Jobs"</h2>
        <JobTable jobs csrf/>
        <details id="launch-panel" class="card">
            <summary>"Launch a job"</summary>
            <LaunchForm csrf jobs/>
        </details>
        <Keys csrf/>
    }
}

#[component]
fn SystemPanel(system: RwSignal<Option<SystemStatus>>) -> impl IntoView {
    let text =
        move |f: fn(&SystemStatus) -> String| move || system.with(|s| s.as_ref().map(f).unwrap_or_default());
    view! {
        <div class="card system" id="system">
            <h2>"System"</h2>
            <dl class="facts">
                <dt>"Device"</dt><dd>{text(|s| format!("{} ({} CPU threads{})", s.device, s.cpu_threads, if s.cuda_compiled { ", CUDA build" } else { "" }))}</dd>
                <dt>"Memory"</dt><dd>{text(|s| format!("{} available of {}; server {}",
                    bytes(s.memory.available.unwrap_or(0)),
                    bytes(s.memory.total.unwrap_or(0)),
                    bytes(s.memory.server_rss.unwrap_or(0))))}</dd>
                <dt>"Queue"</dt><dd id="queue-summary">{text(|s| {
                    let q = &s.queue;
                    format!("{} running (of {} slots), {} queued, {} paused, {} interrupted",
                        q.running, q.slots, q.queued, q.paused, q.interrupted)
                })}</dd>
            </dl>
        </div>
    }
}

/// "42% · 3m07s left" for a job view.
pub fn progress_text(j: &JobView) -> String {
    let p = &j.progress;
    let pct = (p.fraction * 100.0).floor();
    let mut s = format!("{pct:.0}% ({} / {} {})", p.done, p.total, p.unit);
    if let Some(e) = p.eta_seconds {
        s.push_str(&format!(" · {} left", eta(e)));
    }
    if let Some(phase) = &j.phase {
        s.push_str(&format!(" · {phase}…"));
    }
    if let Some(q) = j.queue_position {
        s.push_str(&format!(" · queue position {}", q + 1));
    }
    s
}

/// "Dec 3 12:30 · ran 4m12s" from a job view's created/started/finished times (local time).
pub fn timestamps(j: &JobView) -> String {
    let mut s = local_time(j.created_at);
    match (j.started_at, j.finished_at) {
        (Some(a), Some(b)) => s.push_str(&format!(" · ran {}", eta(b - a))),
        (Some(a), None) => s.push_str(&format!(" · started {}", local_time(a))),
        _ => {}
    }
    s
}

/// Unix seconds as "Dec 3 12:30" in the browser's time zone (UTC on the server).
fn local_time(secs: f64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(secs * 1000.0));
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:02}:{:02}",
        MONTHS[(d.get_month() as usize).min(11)],
        d.get_date(),
        d.get_hours(),
        d.get_minutes()
    )
}

/// Posts a job action (cancel, pause, resume).
pub fn act(csrf: StoredValue<String>, id: i64, what: &'static str, msg: RwSignal<Option<String>>) {
    if what == "cancel"
        && !confirmed(&format!(
            "Cancel job #{id}? Its work since the last checkpoint is lost."
        ))
    {
        return;
    }
    spawn_local(async move {
        let url = format!("/api/admin/jobs/{id}/{what}");
        if let Err(e) = call("POST", &url, None, Some(&csrf.get_value())).await {
            msg.set(Some(e.message));
        }
    });
}

/// Asks the browser's confirmation dialog (false when there is no window, e.g. on the server).
pub fn confirmed(question: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.confirm_with_message(question).ok())
        .unwrap_or(false)
}

#[component]
fn JobTable(jobs: RwSignal<Vec<JobView>>, csrf: StoredValue<String>) -> impl IntoView {
    let msg: RwSignal<Option<String>> = RwSignal::new(None);
    view! {
        {move || msg.get().map(|m| view! { <p class="error" role="alert">{m}</p> })}
        <div class="table-scroll"><table id="jobs">
            <thead><tr><th>"Job"</th><th>"Kind"</th><th>"State"</th><th>"Progress"</th><th>"Created"</th><th></th></tr></thead>
            <tbody>
                <For each=move || jobs.get() key=|j| (j.id, j.state, j.progress.done, j.progress.total, j.phase.clone(), j.queue_position) let:j>
                    {
                        let id = j.id;
                        let state = j.state.as_str().to_owned();
                        let frac = j.progress.fraction;
                        let running = matches!(j.state, JobState::Running | JobState::Queued);
                        let resumable = j.state.resumable();
                        view! {
                            <tr data-job-id=id class=state.clone()>
                                <td><a href=format!("/admin/jobs/{id}")>{format!("#{id}")}</a></td>
                                <td>{j.kind.clone()}</td>
                                <td class="state">{state.clone()}</td>
                                <td class="progress-cell">
                                    <div class="bar" role="progressbar" aria-label=format!("progress of job #{id}") aria-valuemin="0" aria-valuemax="100"
                                        aria-valuenow=format!("{:.0}", frac * 100.0)>
                                        <div class="fill" style=format!("width: {:.1}%", frac * 100.0)></div>
                                    </div>
                                    <span class="small progress-text">{progress_text(&j)}</span>
                                    {j.error.clone().map(|e| view! { <div class="small error">{e}</div> })}
                                </td>
                                <td class="small when">{timestamps(&j)}</td>
                                <td><div class="row">
                                    {running.then(|| view! {
                                        <button class="secondary" on:click=move |_| act(csrf, id, "pause", msg)>"Pause"</button>
                                        <button class="danger" on:click=move |_| act(csrf, id, "cancel", msg)>"Cancel"</button>
                                    })}
                                    {resumable.then(|| view! {
                                        <button class="secondary" on:click=move |_| act(csrf, id, "resume", msg)>"Resume"</button>
                                    })}
                                </div></td>
                            </tr>
                        }
                    }
                </For>
            </tbody>
        </table></div>
        {move || jobs.with(Vec::is_empty).then(|| view! {
            <p id="jobs-empty" class="muted">"No jobs yet. Launch one with the form on this page: a generation with \
                the default generator, or a short tiny-32 training run to try the panel."</p>
        })}
    }
}

#[component]
fn LaunchForm(csrf: StoredValue<String>, jobs: RwSignal<Vec<JobView>>) -> impl IntoView {
    let kind = RwSignal::new("generate".to_owned());
    let values: RwSignal<Values> = RwSignal::new(defaults("generate"));
    let errors: RwSignal<Vec<(String, String)>> = RwSignal::new(vec![]);
    let note: RwSignal<Option<String>> = RwSignal::new(None);
    // The server's config presets (the form's choices for `config`).
    let presets: RwSignal<Presets> = RwSignal::new(Presets::default());
    Effect::new(move |_| {
        spawn_local(async move {
            if let Ok(p) = get::<Presets>("/api/admin/presets").await {
                presets.set(p);
            }
        });
    });
    let preset_names = move |kind: &str| {
        presets.with(|p| match kind {
            "train-diffusion" => p.train_diffusion.clone(),
            _ => p.train_fr.clone(),
        })
    };
    let query = use_query_map();
    // Clone with changes: /admin?clone=<id> fills the form from that job.
    Effect::new(move |_| {
        if let Some(id) = query.with(|q| q.get("clone")) {
            spawn_local(async move {
                if let Ok(j) = get::<JobView>(&format!("/api/admin/jobs/{id}")).await {
                    let (k, v) = from_spec(&j.spec);
                    kind.set(k);
                    values.set(v);
                    note.set(Some(format!(
                        "Cloned from job #{id}: change what you need and launch."
                    )));
                }
            });
        }
    });
    let value_of = move |name: &'static str| {
        move || {
            values.with(|v| {
                v.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, x)| x.clone())
                    .unwrap_or_default()
            })
        }
    };
    let set_value = move |name: &'static str, x: String| {
        values.update(|v| match v.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = x,
            None => v.push((name.to_owned(), x)),
        });
    };
    let error_of = move |name: &'static str| {
        move || {
            errors.with(|e| {
                e.iter()
                    .filter(|(f, _)| f == name || f.starts_with(&format!("{name}[")))
                    .map(|(_, m)| m.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        }
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.set(vec![]);
        note.set(None);
        let spec = match to_spec(&kind.get_untracked(), &values.get_untracked()) {
            Ok(s) => s,
            Err(e) => {
                errors.set(e);
                return;
            }
        };
        // The server's own checks, run here first (the same code): every mistake at once, no round
        // trip. The server checks again; until the presets arrive it is the only judge.
        let known = presets.with_untracked(|p| !p.train_diffusion.is_empty());
        if let (true, Ok(parsed)) = (known, serde_json::from_value::<JobSpec>(spec.clone())) {
            if let Err(e) = presets.with_untracked(|p| parsed.validate(true, p)) {
                // The same words as the server's 422 answer.
                note.set(Some(
                    e.iter()
                        .map(|f| format!("{}: {}", f.field, f.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                ));
                errors.set(e.into_iter().map(|f| (f.field, f.message)).collect());
                return;
            }
        }
        spawn_local(async move {
            match send::<JobView>("POST", "/api/admin/jobs", Some(&spec), Some(&csrf.get_value())).await {
                Ok(j) => note.set(Some(format!("Queued job #{}.", j.id))),
                Err(e) => {
                    errors.set(e.fields.clone());
                    note.set(Some(e.message));
                }
            }
        });
    };
    // Before Launch: what a generation writes, and how long it takes at the last measured rate.
    let plan = move || {
        (kind.get() == "generate")
            .then(|| values.with(generation_plan))
            .flatten()
    };
    let estimate = move || {
        let p = plan()?;
        let (rate, steps) = jobs.with(|js| {
            js.iter().filter(|j| j.kind == "generate").find_map(|j| {
                let rate = j.progress.rate.filter(|r| *r > 0.0)?;
                Some((rate, j.spec["steps"].as_u64().unwrap_or(20) as usize))
            })
        })?;
        Some(format!(
            "About {} at the last generation's rate ({rate:.2} images/s at {steps} steps).",
            eta(p.seconds_at(rate, steps))
        ))
    };
    view! {
        <form id="launch" class="launch" on:submit=submit>
            <label for="launch-kind">"Kind"</label>
            <select id="launch-kind" prop:value=move || kind.get() on:change=move |ev| {
                let k = event_target_value(&ev);
                values.set(defaults(&k));
                errors.set(vec![]);
                kind.set(k);
            }>
                {KINDS.iter().map(|k| view! { <option value=*k>{*k}</option> }).collect_view()}
            </select>
            {move || fields(&kind.get()).iter().map(|fld| {
                let name = fld.name;
                let input_id = format!("field-{name}");
                let input = match fld.ty {
                    FieldType::Choice(opts) => view! {
                        <select id=input_id.clone() name=name prop:value=value_of(name)
                            on:change=move |ev| set_value(name, event_target_value(&ev))>
                            {opts.iter().map(|o| view! { <option value=*o>{*o}</option> }).collect_view()}
                        </select>
                    }.into_any(),
                    FieldType::Preset => view! {
                        <select id=input_id.clone() name=name prop:value=value_of(name)
                            on:change=move |ev| set_value(name, event_target_value(&ev))>
                            {move || {
                                // Until the list arrives, the current value is the one choice.
                                let mut names = preset_names(&kind.get());
                                let current = value_of(name)();
                                if !names.contains(&current) {
                                    names.insert(0, current);
                                }
                                names.into_iter().map(|o| view! { <option value=o.clone()>{o.clone()}</option> }).collect_view()
                            }}
                        </select>
                    }.into_any(),
                    FieldType::Bool => view! {
                        <input id=input_id.clone() name=name type="checkbox"
                            prop:checked=move || value_of(name)() == "true"
                            on:change=move |ev| set_value(name, event_target_checked(&ev).to_string())/>
                    }.into_any(),
                    _ => view! {
                        <input id=input_id.clone() name=name type="text" prop:value=value_of(name)
                            on:input=move |ev| set_value(name, event_target_value(&ev))/>
                    }.into_any(),
                };
                view! {
                    <label for=input_id>{fld.label}</label>
                    {input}
                    <span class="field-error error small">{error_of(name)}</span>
                }
            }).collect_view()}
            {move || plan().map(|p| view! {
                <p id="launch-count" class="notice small" data-files=p.files().to_string()>{p.describe()}" "
                    {estimate().unwrap_or_else(|| "No generation has run yet to estimate the time from.".into())}</p>
            })}
            <div class="row actions"><button type="submit" id="launch-button">"Launch"</button></div>
            {move || note.get().map(|n| view! { <p id="launch-note" class="muted" role="status">{n}</p> })}
        </form>
    }
}

#[component]
fn Keys(csrf: StoredValue<String>) -> impl IntoView {
    let keys: RwSignal<Vec<KeyView>> = RwSignal::new(vec![]);
    let name = RwSignal::new(String::new());
    let read_only = RwSignal::new(false);
    let created: RwSignal<Option<CreatedKey>> = RwSignal::new(None);
    let copied = RwSignal::new(false);
    let msg: RwSignal<Option<String>> = RwSignal::new(None);
    let reload = move || {
        spawn_local(async move {
            if let Ok(a) = get::<Vec<KeyView>>("/api/admin/keys").await {
                keys.set(a);
            }
        });
    };
    Effect::new(move |_| reload());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let scopes = if read_only.get_untracked() {
            json!(["read"])
        } else {
            json!(["generate", "read"])
        };
        let body = json!({"name": name.get_untracked(), "scopes": scopes});
        spawn_local(async move {
            match send::<CreatedKey>("POST", "/api/admin/keys", Some(&body), Some(&csrf.get_value())).await {
                Ok(k) => {
                    copied.set(false);
                    created.set(Some(k));
                    msg.set(None);
                    reload();
                }
                Err(e) => msg.set(Some(e.message)),
            }
        });
    };
    let revoke = move |id: i64| {
        if !confirmed("Revoke this key? Scripts using it get 401 from now on; this cannot be undone.") {
            return;
        }
        spawn_local(async move {
            let url = format!("/api/admin/keys/{id}");
            if let Err(e) = call("DELETE", &url, None, Some(&csrf.get_value())).await {
                msg.set(Some(e.message));
            }
            reload();
        });
    };
    view! {
        <h2>"API keys"</h2>
        <p class="small muted">"For the remote generation API (" <a href="/api/openapi.json">"OpenAPI"</a> "). A key and its webhook secret are shown once."</p>
        <form id="new-key" class="row" on:submit=create>
            <label for="key-name" class="visually-hidden">"Key name"</label>
            <input id="key-name" type="text" placeholder="name, e.g. cluster-lab" prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev))/>
            <label><input type="checkbox" prop:checked=move || read_only.get()
                on:change=move |ev| read_only.set(event_target_checked(&ev))/>" read only"</label>
            <button type="submit">"Create key"</button>
        </form>
        {move || msg.get().map(|m| view! { <p class="error" role="alert">{m}</p> })}
        {move || created.get().map(|k| view! {
            <p class="notice" id="new-key-secret">"Key: " <code id="new-key-value">{k.key.clone()}</code>
                " " <button type="button" class="secondary" id="copy-key" on:click={
                    let key = k.key.clone();
                    move |_| {
                        let _ = window().navigator().clipboard().write_text(&key);
                        copied.set(true);
                    }
                }>{move || if copied.get() { "Copied" } else { "Copy key" }}</button>
                " · webhook secret: " <code>{k.webhook_secret.clone()}</code>
                <br/><span class="small">"Shown once: store it now."</span></p>
        })}
        <div class="table-scroll"><table id="keys">
            <thead><tr><th>"Name"</th><th>"Prefix"</th><th>"Scopes"</th><th>"Limits"</th><th></th></tr></thead>
            <tbody>
                {move || keys.get().into_iter().map(|k| {
                    let id = k.id;
                    let live = k.revoked_at.is_none();
                    view! {
                        <tr>
                            <td>{k.name.clone()}</td>
                            <td><code>{k.prefix.clone()}"…"</code></td>
                            <td>{k.scopes.join(", ")}</td>
                            <td class="small">{format!("{}/min, {} images, {} jobs at once, {} identities/job", k.rate_per_minute, k.quota_images, k.max_active_jobs, k.max_identities)}</td>
                            <td>{if live {
                                view! { <button class="danger" on:click=move |_| revoke(id)>"Revoke"</button> }.into_any()
                            } else {
                                view! { <span class="muted">"revoked"</span> }.into_any()
                            }}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table></div>
        {move || keys.with(Vec::is_empty).then(|| view! {
            <p id="keys-empty" class="muted">"No API keys yet. Create one to let scripts on other machines submit \
                generations (see /api/openapi.json)."</p>
        })}
    }
}
