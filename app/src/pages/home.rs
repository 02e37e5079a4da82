//! Overview: what CemiFace-rs does, with an interactive explanation of the similarity target m.

use leptos::prelude::*;

use crate::regime::Regime;

/// The landing page.
#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <leptos_meta::Title text="Synthetic face data with controlled difficulty"/>
        <section class="hero">
            <h1>"Synthetic face-recognition data with controlled difficulty"</h1>
            <p class="lead">
                "CemiFace-rs is a Rust implementation of "
                <em>"CemiFace: Center-based Semi-hard Synthetic Face Generation for Face Recognition"</em>
                " (NeurIPS 2024). A diffusion model conditioned on a face-identity embedding and a similarity "
                "target m generates faces whose similarity to that identity is m. Sampled at the right m, "
                "the faces make a labelled training set for face recognition without collecting photos of "
                "real people."
            </p>
        </section>
        <SimilarityExplainer/>
        <section>
            <h2>"How the pipeline works"</h2>
            <ol class="pipeline">
                <li>
                    <strong>"Identity embedding. "</strong>
                    "A frozen face-recognition network E_id turns a face into an identity vector C_id = E_id(x)."
                </li>
                <li>
                    <strong>"Training without labels. "</strong>
                    "The UNet denoiser learns, from unlabelled faces, to produce a face whose cosine "
                    "similarity to C_id equals a target m drawn from [−1, 1]: loss = MSE + 0.05·SimMat."
                </li>
                <li>
                    <strong>"Generation. "</strong>
                    "DDIM (20 steps) turns each inquiry identity into many semi-hard variants (m = 0), "
                    "one folder per identity."
                </li>
                <li>
                    <strong>"Evaluation. "</strong>
                    "A face-recognition model (IR-SE-50, CosFace) trained on the synthetic set is verified "
                    "10-fold on LFW-style pair lists."
                </li>
            </ol>
            <p>
                "The pipeline is built on Candle, for GPUs at paper scale (112×112, CASIA-WebFace inquiries) "
                "and for CPUs with a small 64×64 preset. Check which models this server has installed on "
                <a href="/status">"the system status page"</a>"."
            </p>
        </section>
    }
}

/// A slider over m that says what kind of sample that target asks for.
#[component]
fn SimilarityExplainer() -> impl IntoView {
    let (m, set_m) = signal(0.0_f64);
    let regime = move || Regime::of(m.get()).unwrap_or(Regime::SemiHard);
    view! {
        <section class="card explainer">
            <h2>"The similarity target m"</h2>
            <label for="m-slider">"m = " <output id="m-value">{move || format!("{:+.2}", m.get())}</output></label>
            <input
                id="m-slider"
                type="range"
                min="-1"
                max="1"
                step="0.01"
                prop:value=move || m.get().to_string()
                on:input=move |ev| {
                    if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                        set_m.set(v.clamp(-1.0, 1.0));
                    }
                }
            />
            <div class="scale" aria-hidden="true">
                <span>"−1 hard"</span>
                <span>"0 semi-hard"</span>
                <span>"+1 easy"</span>
            </div>
            <p id="m-regime" class=move || format!("regime {}", regime().name())>
                <strong>{move || regime().name()}</strong>
                ": "
                {move || regime().explain()}
            </p>
        </section>
    }
}
