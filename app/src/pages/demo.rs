//! The live demo: upload a face, choose m, steps, seed and η, and watch every DDIM step's x̂0
//! arrive over the page's websocket, with a progress bar, the similarity to the uploaded face
//! against the target, an m-sweep, and a gallery of this visitor's results.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::demo_client::{random_seed, revoke, upload, DemoSocket, Incoming};
use crate::demo_protocol::{
    ClientMessage, DemoLimits, JobRequest, ModelInfo, ServerEvent, Timings, UploadReply, FRAME_FINAL,
    MAX_STEPS,
};
use crate::num_field::TextField;
use crate::sim_chart::SimChart;

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

/// A finished image of this visitor, with what made it.
#[derive(Debug, Clone, PartialEq)]
struct Shot {
    url: String,
    request: JobRequest,
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
            Incoming::Frame(kind, meta, url) => {
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
                                    url: url.clone(),
                                    request: r.request.clone(),
                                    similarity: meta.similarity.clone(),
                                },
                            )
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
            })
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
    let steps_field = TextField::new(20_u32, crate::num_field::steps);
    let seed_field = TextField::new(0_u64, crate::num_field::seed);
    let eta_field = TextField::new(1.0_f32, crate::num_field::eta);
    steps_field.follow(steps);
    seed_field.follow(seed);
    eta_field.follow(eta);
    let fields_ok = move || steps_field.error().is_none() && seed_field.error().is_none() && eta_field.error().is_none();
    // Browser only: open the socket and draw a first seed.
    Effect::new(move |_| {
        st.socket
            .set_value(Some(DemoSocket::connect(move |inc| st.on_incoming(inc))));
        seed.set(random_seed());
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
    let ready =
        move || st.face.with(Option::is_some) && matches!(st.model.get(), Some(Ok(_))) && st.connected.get();
    let run_field =
        move |f: fn(&Run) -> String| move || st.run.with(|r| r.as_ref().map(f).unwrap_or_default());

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
                Some(Err(why)) => view! { <p id="no-model" class="notice">{why}</p> }.into_any(),
                Some(Ok(info)) => view! {
                    <p id="model-info" class="muted">
                        {format!("Generator: {}×{} px, E_id {}, {} training steps.", info.image_size, info.image_size, info.encoder, info.step)}
                    </p>
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
                        <button id="start" prop:disabled=move || busy() || !ready() || !fields_ok() on:click=move |_| st.submit(request(false))>"Start"</button>
                        <button id="sweep" class="secondary" prop:disabled=move || busy() || !ready() || !fields_ok()
                            on:click=move |_| st.submit(request(true))>"m-sweep (−1 … 1)"</button>
                        <button id="cancel" class="danger" prop:disabled=move || !busy() on:click=move |_| {
                            if let Some(job_id) = st.run.with_untracked(|r| r.as_ref().and_then(|r| r.job_id)) {
                                st.send(&ClientMessage::Cancel { job_id });
                            }
                        }>"Cancel"</button>
                    </div>
                </div>
            </div>
            {move || st.run.with(Option::is_some).then(|| view! {
                <div class="card result">
                    <h2>"3. Sampling"</h2>
                    <progress id="progress" max=run_field(|r| r.request.steps.to_string()) value=run_field(|r| r.step.to_string())></progress>
                    <p id="progress-text">{run_field(progress_text)}</p>
                    <div class="result-row">
                        <img id="preview" class="preview" alt="x̂0 at the latest step" src=run_field(|r| r.preview.clone().unwrap_or_default())/>
                        <SimChart
                            points=Signal::derive(move || st.run.with(|r| r.as_ref().map(|r| r.points.clone()).unwrap_or_default()))
                            targets=Signal::derive(move || st.run.with(|r| r.as_ref().map(|r| r.request.targets()).unwrap_or_default()))
                            steps=Signal::derive(move || st.run.with(|r| r.as_ref().map_or(1, |r| r.request.steps)))/>
                    </div>
                    <p id="similarity">{run_field(similarity_text)}</p>
                </div>
            })}
            <h2>"Your results"</h2>
            <p class="small muted">"Re-running with the same seed and settings reproduces an image exactly."</p>
            <div id="gallery" class="gallery">
                <For each=move || st.gallery.get() key=|s| s.url.clone() let:shot>
                    <figure class="shot">
                        <img src=shot.url.clone() alt="generated face"/>
                        <figcaption>{shot_caption(&shot)}</figcaption>
                        <button class="secondary rerun" prop:disabled=move || busy() || !ready() on:click={
                            let r = shot.request.clone();
                            move |_| {
                                m.set(r.m);
                                steps.set(r.steps);
                                seed.set(r.seed);
                                eta.set(r.eta);
                                st.submit(JobRequest { upload_id: st.face.get_untracked().map(|f| f.upload_id).unwrap_or_default(), ..r.clone() });
                            }
                        }>"Re-run"</button>
                    </figure>
                </For>
            </div>
        </section>
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

fn similarity_text(r: &Run) -> String {
    r.request
        .targets()
        .iter()
        .zip(&r.similarity)
        .enumerate()
        .map(|(i, (m, s))| {
            format!(
                "{}similarity {s:+.3} (target m = {m:+.2})",
                if i == 0 { "" } else { " · " }
            )
        })
        .collect::<String>()
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
