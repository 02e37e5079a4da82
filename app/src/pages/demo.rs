//! The live demo: upload a face, choose m, steps, seed and η, and watch every DDIM step's x̂0
//! arrive over the page's websocket, with a progress bar, the similarity to the uploaded face
//! against the target, an m-sweep, and a gallery of this visitor's results.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::components::num_field::TextField;
use crate::components::sim_chart::SimChart;
use crate::demo_client::{random_seed, revoke, upload, DemoSocket, Incoming};
use crate::demo_protocol::{
    ClientMessage, DemoLimits, JobRequest, ModelInfo, ServerEvent, Timings, UploadReply, FRAME_FINAL,
    MAX_STEPS,
};
use crate::gallery::{self, Shot};
use crate::regime::Regime;

/// Where the current job is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Submitting,
    Queued { position: usize, size: usize },
    Running,
    Done(Timings),
    Cancelled(u32),
    Failed(String),
}

impl Phase {
    fn active(&self) -> bool {
        matches!(self, Self::Submitting | Self::Queued { .. } | Self::Running)
    }
}

/// The job on screen.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    job_id: Option<u64>,
    request: JobRequest,
    phase: Phase,
    step: u32,
    eta_ms: u64,
    points: Vec<(u32, Vec<f32>)>,
    preview: Option<String>,
    similarity: Vec<f32>,
}

#[derive(Clone, Copy)]
struct DemoState {
    model: RwSignal<Option<Result<ModelInfo, String>>>,
    limits: RwSignal<Option<DemoLimits>>,
    connected: RwSignal<bool>,
    face: RwSignal<Option<UploadReply>>,
    upload_msg: RwSignal<Option<Result<String, String>>>,
    run: RwSignal<Option<Run>>,
    gallery: RwSignal<Vec<Shot>>,
    socket: StoredValue<Option<DemoSocket>, LocalStorage>,
}

impl DemoState {
    fn on_incoming(self, inc: Incoming) {
        match inc {
            Incoming::Open => {
                self.connected.set(true);
                let resume = self
                    .run
                    .with_untracked(|r| r.as_ref().filter(|r| r.phase.active()).and_then(|r| r.job_id));
                if let Some(job_id) = resume {
                    self.send(&ClientMessage::Subscribe { job_id });
                }
            }
            Incoming::Closed => self.connected.set(false),
            Incoming::Event(e) => self.on_event(e),
            Incoming::Frame(kind, meta, url, png) => {
                let mut stale = Some(url.clone());
                self.run.update(|r| {
                    let Some(r) = r.as_mut().filter(|r| r.job_id == Some(meta.job_id)) else {
                        return;
                    };
                    stale = None;
                    if kind == FRAME_FINAL {
                        self.gallery.update(|g| {
                            g.insert(
                                0,
                                Shot {
                                    id: js_sys::Date::now() as u64,
                                    url: url.clone(),
                                    png: png.clone().unwrap_or_default(),
                                    request: r.request.clone(),
                                    similarity: meta.similarity.clone(),
                                },
                            );
                            for old in g.drain(gallery::MAX_KEPT.min(g.len())..) {
                                revoke(&old.url);
                            }
                            gallery::browser::save(g);
                        });
                    } else if let Some(old) = r.preview.replace(url.clone()) {
                        if !self.gallery.with_untracked(|g| g.iter().any(|s| s.url == old)) {
                            revoke(&old);
                        }
                    }
                    if kind == FRAME_FINAL {
                        r.preview = Some(url.clone());
                    }
                    r.step = meta.step;
                    r.eta_ms = meta.eta_ms;
                    r.similarity = meta.similarity.clone();
                    if r.points.last().is_none_or(|(s, _)| *s < meta.step) && !meta.similarity.is_empty() {
                        r.points.push((meta.step, meta.similarity.clone()));
                    }
                });
                if let Some(u) = stale {
                    revoke(&u);
                }
            }
        }
    }

    fn on_event(self, e: ServerEvent) {
        let mine = |id: u64| {
            move |r: &Run| r.job_id == Some(id) || (r.job_id.is_none() && r.phase == Phase::Submitting)
        };
        let set = |id: u64, f: &dyn Fn(&mut Run)| {
            self.run.update(|r| {
                if let Some(r) = r.as_mut().filter(|r| mine(id)(r)) {
                    r.job_id = Some(id);
                    f(r);
                }
            });
        };
        match e {
            ServerEvent::Hello {
                model,
                no_model,
                limits,
            } => {
                self.model
                    .set(Some(model.ok_or_else(|| no_model.unwrap_or_default())));
                self.limits.set(Some(limits));
            }
            ServerEvent::Queued {
                job_id,
                position,
                queue_size,
                ..
            } => set(job_id, &|r| {
                r.phase = Phase::Queued {
                    position,
                    size: queue_size,
                }
            }),
            ServerEvent::Started { job_id, .. } => set(job_id, &|r| r.phase = Phase::Running),
            ServerEvent::Done {
                job_id,
                similarity,
                timings,
                ..
            } => set(job_id, &|r| {
                r.phase = Phase::Done(timings);
                r.similarity = similarity.clone();
            }),
            ServerEvent::Cancelled {
                job_id, steps_done, ..
            } => set(job_id, &|r| r.phase = Phase::Cancelled(steps_done)),
            ServerEvent::Error { job_id, message, .. } => {
                self.run.update(|r| {
                    if let Some(r) = r
                        .as_mut()
                        .filter(|r| job_id.is_none_or(|id| mine(id)(r)) && r.phase.active())
                    {
                        r.phase = Phase::Failed(message.clone());
                    }
                });
            }
            ServerEvent::Heartbeat { .. } => self.connected.set(true),
        }
    }

    fn send(self, msg: &ClientMessage) -> bool {
        self.socket
            .with_value(|s| s.as_ref().is_some_and(|s| s.send(msg)))
    }

    fn submit(self, request: JobRequest) {
        if let Err(e) = request.validate() {
            self.run.set(Some(Run::new(request, Phase::Failed(e))));
            return;
        }
        let phase = if self.send(&ClientMessage::Submit(request.clone())) {
            Phase::Submitting
        } else {
            Phase::Failed("not connected to the server; reconnecting…".into())
        };
        if let Some(old) = self.run.get_untracked().and_then(|r| r.preview) {
            if !self.gallery.with_untracked(|g| g.iter().any(|s| s.url == old)) {
                revoke(&old);
            }
        }
        self.run.set(Some(Run::new(request, phase)));
    }

    fn upload_file(self, file: web_sys::File) {
        if let Some(l) = self.limits.get_untracked() {
            if file.size() > l.max_upload_bytes as f64 {
                self.upload_msg.set(Some(Err(format!(
                    "the file is {:.1} MB; the limit is {:.1} MB",
                    file.size() / 1048576.0,
                    l.max_upload_bytes as f64 / 1048576.0
                ))));
                return;
            }
        }
        self.upload_msg.set(Some(Ok("Uploading and aligning…".into())));
        spawn_local(async move {
            match upload(file).await {
                Ok(reply) => {
                    self.upload_msg.set(reply.note.clone().map(Ok));
                    self.face.set(Some(reply));
                }
                Err(e) => self.upload_msg.set(Some(Err(e))),
            }
        });
    }
}

impl Run {
    fn new(request: JobRequest, phase: Phase) -> Self {
        Self {
            job_id: None,
            request,
            phase,
            step: 0,
            eta_ms: 0,
            points: Vec::new(),
            preview: None,
            similarity: Vec::new(),
        }
    }
}

/// The page.
#[component]
pub fn DemoPage() -> impl IntoView {
    let st = DemoState {
        model: RwSignal::new(None),
        limits: RwSignal::new(None),
        connected: RwSignal::new(false),
        face: RwSignal::new(None),
        upload_msg: RwSignal::new(None),
        run: RwSignal::new(None),
        gallery: RwSignal::new(Vec::new()),
        socket: StoredValue::new_local(None),
    };
    let (m, steps, seed, eta) = (
        RwSignal::new(0.0_f32),
        RwSignal::new(20_u32),
        RwSignal::new(0_u64),
        RwSignal::new(1.0_f32),
    );
    // What is typed in the number fields (never rewritten while typing), and whether each field
    // has lost focus once (its error shows from then on).
    let steps_field = TextField::new(20_u32, crate::components::num_field::steps);
    let seed_field = TextField::new(0_u64, crate::components::num_field::seed);
    let eta_field = TextField::new(1.0_f32, crate::components::num_field::eta);
    steps_field.follow(steps);
    seed_field.follow(seed);
    eta_field.follow(eta);
    let fields_ok =
        move || steps_field.error().is_none() && seed_field.error().is_none() && eta_field.error().is_none();
    // Browser only: open the socket and draw a first seed.
    Effect::new(move |_| {
        st.socket
            .set_value(Some(DemoSocket::connect(move |inc| st.on_incoming(inc))));
        seed.set(random_seed());
        st.gallery.set(gallery::browser::load());
    });
    let request = move |sweep: bool| JobRequest {
        upload_id: st.face.get_untracked().map(|f| f.upload_id).unwrap_or_default(),
        m: m.get_untracked(),
        steps: steps.get_untracked(),
        seed: seed.get_untracked(),
        eta: eta.get_untracked(),
        sweep,
    };
    let busy = move || st.run.with(|r| r.as_ref().is_some_and(|r| r.phase.active()));
    // Why Start is disabled, in words (None: it is enabled).
    let start_blocked = move || -> Option<&'static str> {
        match st.model.get() {
            None => return Some("Waiting for the server…"),
            Some(Err(_)) => return Some("No generator is installed on this server (see the note above)."),
            Some(Ok(_)) => {}
        }
        if !st.connected.get() {
            Some("Connecting to the server…")
        } else if st.face.with(Option::is_none) {
            Some("Upload a photo first.")
        } else if !fields_ok() {
            Some("Fix the settings marked in red.")
        } else if busy() {
            Some("A run is in progress: wait for it or cancel it.")
        } else {
            None
        }
    };
    let start = move |sweep: bool| {
        st.submit(request(sweep));
        // On narrow screens the result card is below the settings: bring it into view.
        if let Some(el) = document().get_element_by_id("result") {
            let opts = web_sys::ScrollIntoViewOptions::new();
            opts.set_block(web_sys::ScrollLogicalPosition::Nearest);
            el.scroll_into_view_with_scroll_into_view_options(&opts);
        }
    };
    let band = move || Regime::of(m.get() as f64).unwrap_or(Regime::SemiHard);

    view! {
        <leptos_meta::Title text=move || st.run.with(|r| match r {
            Some(r) if r.phase.active() => format!("Step {}/{} · Live demo", r.step, r.request.steps),
            _ => "Live demo".to_owned(),
        })/>
        <section class="demo">
            <h1>"Live demo"</h1>
            <p class="lead">
                "Upload a face, choose the similarity target m and watch the generator's clean-image estimate x̂0 "
                "sharpen at every DDIM step."
            </p>
            <p id="connection" class=move || if st.connected.get() { "badge ok" } else { "badge" }>
                {move || if st.connected.get() { "connected" } else { "connecting…" }}
            </p>
            {move || match st.model.get() {
                Some(Err(why)) => view! {
                    <div id="no-model" class="notice">
                        <p><strong>"The demo cannot make faces right now: this server has no generator installed."</strong></p>
                        <details><summary>"For the server's operator"</summary><p class="small">{why}</p></details>
                    </div>
                }.into_any(),
                Some(Ok(info)) => view! {
                    <p id="model-info" class="muted">
                        {format!("Generator: {}×{} px, E_id {}, {} training steps.", info.image_size, info.image_size, info.encoder, info.step)}
                    </p>
                    {(info.step < UNDER_TRAINED_STEPS).then(|| view! {
                        <p id="under-trained" class="notice">
                            {format!("This generator has only {} training step(s): expect coloured noise rather than faces,                                 and similarities that do not follow m.", info.step)}
                        </p>
                    })}
                }.into_any(),
                None => ().into_any(),
            }}
            <div class="demo-grid">
                <div class="card">
                    <h2>"1. Your photo"</h2>
                    <div id="drop-zone" class="drop-zone"
                        on:dragover=move |ev: web_sys::DragEvent| ev.prevent_default()
                        on:drop=move |ev: web_sys::DragEvent| {
                            ev.prevent_default();
                            if let Some(f) = ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
                                st.upload_file(f);
                            }
                        }>
                        <p>"Drop a JPEG, PNG or WebP photo here, or"</p>
                        <label for="photo-input" class="small">"choose a file: "</label>
                        <input id="photo-input" type="file" accept="image/jpeg,image/png,image/webp"
                            on:change=move |ev| {
                                let input: web_sys::HtmlInputElement = event_target(&ev);
                                if let Some(f) = input.files().and_then(|f| f.get(0)) {
                                    st.upload_file(f);
                                }
                            }/>
                    </div>
                    {move || st.upload_msg.get().map(|m| match m {
                        Ok(note) => view! { <p id="upload-note" class="muted">{note}</p> }.into_any(),
                        Err(e) => view! { <p id="upload-error" class="error" role="alert">{e}</p> }.into_any(),
                    })}
                    {move || st.face.get().map(|f| view! {
                        <figure class="crop">
                            <img id="aligned-crop" src=f.crop_url.clone() alt="your face, aligned" width="112" height="112"/>
                            <figcaption>"Aligned crop (what the identity network sees)"</figcaption>
                        </figure>
                        <button class="secondary" id="forget" on:click=move |_| {
                            let id = f.upload_id.clone();
                            st.face.set(None);
                            st.upload_msg.set(None);
                            if let Some(input) = document().get_element_by_id("photo-input") {
                                use wasm_bindgen::JsCast;
                                if let Ok(input) = input.dyn_into::<web_sys::HtmlInputElement>() {
                                    input.set_value("");
                                }
                            }
                            spawn_local(async move { crate::demo_client::forget(&id).await });
                        }>"Forget my photo"</button>
                    })}
                    <p class="small muted">
                        "Only the aligned crop and its identity embedding are kept, in memory, for 15 minutes after "
                        "their last use; the photo itself is dropped once aligned and nothing is written to disk."
                    </p>
                </div>
                <div class="card controls">
                    <h2>"2. Settings"</h2>
                    <label for="m-input">"Similarity target m = " <output id="m-out">{move || format!("{:+.2}", m.get())}</output></label>
                    <input id="m-input" type="range" min="-1" max="1" step="0.01"
                        prop:value=move || m.get().to_string()
                        on:input=move |ev| { if let Ok(v) = event_target_value(&ev).parse::<f32>() { m.set(v.clamp(-1.0, 1.0)) } }/>
                    <div class="scale small" aria-hidden="true"><span>"−1 hard"</span><span>"0 semi-hard"</span><span>"easy +1"</span></div>
                    <p id="m-band" class=move || format!("regime small {}", band().name()) aria-live="polite">
                        <strong>{move || band().name()}</strong>": "{move || band().explain()}
                    </p>
                    <label for="steps-input">"DDIM steps"</label>
                    <input id="steps-input" type="number" min="1" max=MAX_STEPS.to_string() inputmode="numeric"
                        aria-describedby="steps-error" prop:value=move || steps_field.shown.get()
                        on:input=move |ev| steps_field.typed(&event_target_value(&ev), steps)
                        on:blur=move |_| steps_field.touched.set(true)/>
                    {move || steps_field.shown_error().map(|e| view! { <span id="steps-error" class="field-error" role="alert">{e}</span> })}
                    <label for="seed-input">"Seed"</label>
                    <div class="row">
                        <input id="seed-input" type="number" min="0" inputmode="numeric"
                            aria-describedby="seed-error" prop:value=move || seed_field.shown.get()
                            on:input=move |ev| seed_field.typed(&event_target_value(&ev), seed)
                            on:blur=move |_| seed_field.touched.set(true)/>
                        <button class="secondary" id="randomize" on:click=move |_| seed.set(random_seed())>"Randomize"</button>
                    </div>
                    {move || seed_field.shown_error().map(|e| view! { <span id="seed-error" class="field-error" role="alert">{e}</span> })}
                    <label for="eta-input">"η (0 = deterministic DDIM, 1 = DCFace's default)"</label>
                    <input id="eta-input" type="number" min="0" max="1" step="0.1" inputmode="decimal"
                        aria-describedby="eta-error" prop:value=move || eta_field.shown.get()
                        on:input=move |ev| eta_field.typed(&event_target_value(&ev), eta)
                        on:blur=move |_| eta_field.touched.set(true)/>
                    {move || eta_field.shown_error().map(|e| view! { <span id="eta-error" class="field-error" role="alert">{e}</span> })}
                    <div class="row actions">
                        <button id="start" aria-describedby="start-reason" prop:disabled=move || start_blocked().is_some() on:click=move |_| start(false)>"Start"</button>
                        <button id="sweep" class="secondary" aria-describedby="start-reason" prop:disabled=move || start_blocked().is_some()
                            on:click=move |_| start(true)>"m-sweep (−1 … 1)"</button>
                        <button id="cancel" class="danger" prop:disabled=move || !busy() on:click=move |_| {
                            if let Some(job_id) = st.run.with_untracked(|r| r.as_ref().and_then(|r| r.job_id)) {
                                st.send(&ClientMessage::Cancel { job_id });
                            }
                        }>"Cancel"</button>
                    </div>
                    <p id="start-reason" class="small muted">{move || start_blocked().unwrap_or("")}</p>
                </div>
                <ResultCard st/>
            </div>
            <h2>"Your results"</h2>
            <p class="small muted">"Kept in this browser only. Re-running with the same seed and settings reproduces an image                 exactly; each PNG carries its settings (the `parameters` text that A1111-style tools read)."</p>
            <Gallery st blocked=Signal::derive(move || start_blocked().is_some()) rerun=Callback::new(move |r: JobRequest| {
                m.set(r.m);
                steps.set(r.steps);
                seed.set(r.seed);
                eta.set(r.eta);
                st.submit(JobRequest { upload_id: st.face.get_untracked().map(|f| f.upload_id).unwrap_or_default(), ..r });
            })/>
        </section>
    }
}

/// The run on screen: progress, the live x̂0 strip with its labels, the similarity chart, verdicts.
#[component]
fn ResultCard(st: DemoState) -> impl IntoView {
    let run_field =
        move |f: fn(&Run) -> String| move || st.run.with(|r| r.as_ref().map(f).unwrap_or_default());
    view! {
                <div class="card result" id="result">
                    <h2>"3. Sampling"</h2>
                    {move || st.run.with(Option::is_none).then(|| view! {
                        <p id="result-empty" class="muted">"Each DDIM step's estimate of the final face appears here,                             with its similarity to your photo."</p>
                    })}
                    {move || st.run.with(Option::is_some).then(|| view! {
                        <progress id="progress" aria-label="sampling progress" max=run_field(|r| r.request.steps.to_string()) value=run_field(|r| r.step.to_string())></progress>
                        <p id="progress-text" role="status">{run_field(progress_text)}</p>
                        <div class="result-row">
                            <figure class="strip">
                                <img id="preview" class="preview" alt=run_field(|r| format!("estimate of the final face at step {}", r.step)) src=run_field(|r| r.preview.clone().unwrap_or_default())/>
                                <figcaption id="panel-labels" class="panel-labels">
                                    {move || st.run.with(|r| r.as_ref().map(panel_labels).unwrap_or_default()).into_iter()
                                        .map(|l| view! { <span>{l}</span> }).collect_view()}
                                </figcaption>
                            </figure>
                            <SimChart
                                points=Signal::derive(move || st.run.with(|r| r.as_ref().map(|r| r.points.clone()).unwrap_or_default()))
                                targets=Signal::derive(move || st.run.with(|r| r.as_ref().map(|r| r.request.targets()).unwrap_or_default()))
                                steps=Signal::derive(move || st.run.with(|r| r.as_ref().map_or(1, |r| r.request.steps)))/>
                        </div>
                        <p id="similarity" aria-live="polite">{run_field(similarity_text)}</p>
                    })}
                </div>
    }
}

/// This visitor's results: download, re-run, delete; kept in the browser (`gallery`).
#[component]
fn Gallery(st: DemoState, blocked: Signal<bool>, rerun: Callback<JobRequest>) -> impl IntoView {
    view! {
            {move || st.gallery.with(Vec::is_empty).then(|| view! {
                <p id="gallery-empty" class="muted">"No results yet: your finished runs collect here."</p>
            })}
            {move || st.gallery.with(|g| !g.is_empty()).then(|| view! {
                <div class="row">
                    <button class="secondary" id="download-all" on:click=move |_| {
                        st.gallery.with_untracked(|g| gallery::browser::download(&gallery::zip_all(g), "application/zip", "cemiface-results.zip"));
                    }>"Download all (.zip)"</button>
                    <button class="secondary" id="clear-gallery" on:click=move |_| {
                        if crate::pages::admin::confirmed("Remove every result from this browser?") {
                            st.gallery.update(|g| {
                                for s in g.drain(..) {
                                    revoke(&s.url);
                                }
                                gallery::browser::save(g);
                            });
                        }
                    }>"Clear all"</button>
                </div>
            })}
            <div id="gallery" class="gallery">
                <For each=move || st.gallery.get() key=|s| s.url.clone() let:shot>
                    <figure class="shot">
                        <img src=shot.url.clone() alt=shot_caption(&shot)/>
                        <figcaption>{shot_caption(&shot)}</figcaption>
                        <div class="row">
                            <a class="button secondary download" href=shot.url.clone() download=shot.file_name()>"PNG"</a>
                            <button class="secondary rerun" prop:disabled=move || blocked.get() on:click={
                                let r = shot.request.clone();
                                move |_| rerun.run(r.clone())
                            }>"Re-run"</button>
                            <button class="secondary delete" aria-label=format!("delete {}", shot.file_name()) on:click={
                                let id = shot.id;
                                move |_| st.gallery.update(|g| {
                                    if let Some(i) = g.iter().position(|s| s.id == id) {
                                        revoke(&g.remove(i).url);
                                        gallery::browser::save(g);
                                    }
                                })
                            }>"Delete"</button>
                        </div>
                    </figure>
                </For>
            </div>
    }
}

fn progress_text(r: &Run) -> String {
    match &r.phase {
        Phase::Submitting => "Submitting…".into(),
        Phase::Queued { position, size } => format!("Waiting in the queue: position {position} of {size}"),
        Phase::Running if r.step == 0 => "Starting…".into(),
        Phase::Running => format!(
            "Step {} of {} · about {:.1} s left",
            r.step,
            r.request.steps,
            r.eta_ms as f64 / 1000.0
        ),
        Phase::Done(t) => format!(
            "Done: {} steps in {:.1} s ({:.0} ms per step, {:.1} s in the queue)",
            r.request.steps,
            t.sampling_ms as f64 / 1000.0,
            t.per_step_ms,
            t.queued_ms as f64 / 1000.0
        ),
        Phase::Cancelled(n) => format!("Cancelled after {n} step(s)"),
        Phase::Failed(e) => format!("Error: {e}"),
    }
}

/// How far an achieved similarity may sit from m and still count as on target (the default
/// generator's bar, docs/latent-generator.md §5).
pub const ON_TARGET: f32 = 0.15;
/// Fewer training steps than this: the page warns that the model is not trained yet.
pub const UNDER_TRAINED_STEPS: u64 = 500;

/// "on target", or by how much and which way it missed.
pub fn verdict(m: f32, s: f32) -> String {
    let d = s - m;
    if d.abs() <= ON_TARGET {
        format!("on target (within ±{ON_TARGET})")
    } else if d > 0.0 {
        format!("{d:.2} above target")
    } else {
        format!("{:.2} below target", -d)
    }
}

fn similarity_text(r: &Run) -> String {
    let done = matches!(r.phase, Phase::Done(_));
    r.request
        .targets()
        .iter()
        .zip(&r.similarity)
        .enumerate()
        .map(|(i, (m, s))| {
            format!(
                "{}m = {m:+.2}: similarity {s:+.3}{}",
                if i == 0 { "" } else { " · " },
                if done {
                    format!(", {}", verdict(*m, *s))
                } else {
                    String::new()
                }
            )
        })
        .collect::<String>()
}

/// One label per panel of the preview strip: its m, and the similarity reached so far.
fn panel_labels(r: &Run) -> Vec<String> {
    r.request
        .targets()
        .iter()
        .enumerate()
        .map(|(i, m)| match r.similarity.get(i) {
            Some(s) => format!("m {m:+.2} → {s:+.2}"),
            None => format!("m {m:+.2}"),
        })
        .collect()
}

fn shot_caption(s: &Shot) -> String {
    let what = if s.request.sweep {
        "m-sweep".to_owned()
    } else {
        format!("m = {:+.2}", s.request.m)
    };
    let sims = s
        .similarity
        .iter()
        .map(|v| format!("{v:+.2}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{what} · seed {} · {} steps · η {} · similarity {sims}",
        s.request.seed, s.request.steps, s.request.eta
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_uses_the_tolerance_and_says_which_way_it_missed() {
        assert_eq!(verdict(0.0, 0.15), "on target (within ±0.15)");
        assert_eq!(verdict(0.0, -0.1), "on target (within ±0.15)");
        assert_eq!(verdict(-0.35, 0.884), "1.23 above target");
        assert_eq!(verdict(1.0, 0.7), "0.30 below target");
    }
}
