//! System status: version, compute device and the installed model assets.

use leptos::prelude::*;

use crate::status::{get_system_status, SystemStatus};

/// Shows what `/healthz` reports, with a button that re-checks the assets on the server.
#[component]
pub fn StatusPage() -> impl IntoView {
    let (checks, set_checks) = signal(0_u32);
    let status = Resource::new(move || checks.get(), |_| get_system_status());
    view! {
        <leptos_meta::Title text="System status"/>
        <section>
            <h1>"System status"</h1>
            <p>
                "The same data as " <a href="/healthz">"/healthz"</a>
                ". Assets are fetched and checksum-verified by " <code>"scripts/setup.sh"</code> "."
            </p>
            <button id="recheck" on:click=move |_| set_checks.update(|n| *n += 1)>
                "Re-check assets"
            </button>
            <span id="check-count" class="muted">
                {move || match checks.get() {
                    0 => String::new(),
                    n => format!("re-checked {n}×"),
                }}
            </span>
            <Transition fallback=|| view! { <p class="muted">"Checking…"</p> }>
                {move || {
                    status
                        .get()
                        .map(|r| match r {
                            Ok(s) => view! { <StatusTable status=s/> }.into_any(),
                            Err(e) => {
                                view! { <p class="error">"Could not read the status: " {e.to_string()}</p> }
                                    .into_any()
                            }
                        })
                }}
            </Transition>
        </section>
    }
}

#[component]
fn StatusTable(status: SystemStatus) -> impl IntoView {
    let missing = status.assets.values().filter(|g| !g.present).count();
    let rows = status
        .assets
        .into_iter()
        .map(|(name, g)| {
            let bad: Vec<String> = g
                .files
                .iter()
                .filter(|(_, s)| s.as_str() != "ok")
                .map(|(f, s)| format!("{f}: {s}"))
                .collect();
            let state = if g.present { "installed" } else { "not installed" };
            view! {
                <tr class=if g.present { "ok" } else { "bad" }>
                    <td>{name}</td>
                    <td class="state">{state}</td>
                    <td><code>{g.source}</code></td>
                    <td>{format!("{} file(s)", g.files.len())} {(!bad.is_empty()).then(|| format!(" — {}", bad.join(", ")))}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <dl class="facts">
            <dt>"Version"</dt><dd id="version">{status.version}</dd>
            <dt>"Device"</dt><dd id="device">{match &status.gpu {
                Some(g) => format!("{}: {g}", status.device),
                None => status.device.clone(),
            }}</dd>
            <dt>"CUDA in this build"</dt><dd>{if status.cuda_compiled { "yes" } else { "no" }}</dd>
            <dt>"CPU threads"</dt><dd>{status.cpu_threads}</dd>
            <dt>"Assets folder"</dt><dd><code>{status.assets_dir}</code></dd>
            <dt>"Demo generator"</dt><dd id="generator">{match (&status.generator, &status.generator_problem) {
                (Some(g), _) => view! { <span class="ok-text">{g.clone()}</span> }.into_any(),
                (None, p) => view! { <span class="error">"none: "{p.clone().unwrap_or_default()}</span> }.into_any(),
            }}</dd>
            <dt>"Admin panel"</dt><dd id="admin-state">{if status.admin_enabled {
                "enabled".to_owned()
            } else {
                "disabled (start the server with an admin password hash; see /admin)".to_owned()
            }}</dd>
        </dl>
        {(missing > 0).then(|| view! {
            <p class="notice">
                {format!("{missing} asset group(s) missing or corrupt: run ")}
                <code>"scripts/setup.sh"</code>" to fetch and verify them."
            </p>
        })}
        <div class="table-scroll"><table id="assets">
            <thead><tr><th>"Asset"</th><th>"State"</th><th>"Package"</th><th>"Files"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table></div>
    }
}
