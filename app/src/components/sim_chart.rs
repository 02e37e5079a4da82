//! Similarity-vs-step chart (SVG): per image, the achieved cosine similarity of x̂0 to the
//! uploaded face at every DDIM step, against its target m (dashed).

use leptos::prelude::*;

/// Line colours, one per image of a job (an m-sweep has five).
pub const PALETTE: [&str; 5] = ["#2f5fd0", "#d0632f", "#1f7a3f", "#8a3fd0", "#b3261e"];

const W: f64 = 420.0;
const H: f64 = 220.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 28.0;

/// Maps (step, similarity) to SVG coordinates; similarity spans [−1, 1].
fn xy(step: f64, steps: f64, s: f64) -> (f64, f64) {
    let x = LEFT
        + (W - LEFT - RIGHT)
            * if steps > 1.0 {
                (step - 1.0) / (steps - 1.0)
            } else {
                0.5
            };
    let y = TOP + (H - TOP - BOTTOM) * (1.0 - (s.clamp(-1.0, 1.0) + 1.0) / 2.0);
    (x, y)
}

/// The polyline points of series `i` of `points` ((step, similarities) per received frame).
pub fn polyline(points: &[(u32, Vec<f32>)], i: usize, steps: u32) -> String {
    points
        .iter()
        .filter_map(|(step, sims)| sims.get(i).map(|s| xy(*step as f64, steps as f64, *s as f64)))
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The chart. `points` grows as frames arrive.
#[component]
pub fn SimChart(
    #[prop(into)] points: Signal<Vec<(u32, Vec<f32>)>>,
    #[prop(into)] targets: Signal<Vec<f32>>,
    #[prop(into)] steps: Signal<u32>,
) -> impl IntoView {
    let grid = [-1.0, -0.5, 0.0, 0.5, 1.0]
        .into_iter()
        .map(|v| {
            let (_, y) = xy(1.0, 1.0, v);
            view! {
                <line class="grid" x1=LEFT x2=W - RIGHT y1=y y2=y/>
                <text class="tick" x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{format!("{v:+.1}")}</text>
            }
        })
        .collect_view();
    view! {
        <figure class="sim-figure">
        <svg id="sim-chart" class="chart" viewBox=format!("0 0 {W} {H}") role="img"
            aria-label="similarity of x̂0 to the uploaded face at each step, against the target m">
            {grid}
            <text class="tick" x=LEFT y=H - 8.0>"step 1"</text>
            <text class="tick" x=W - RIGHT y=H - 8.0 text-anchor="end">
                {move || format!("step {}", steps.get())}
            </text>
            {move || {
                targets
                    .get()
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let (_, y) = xy(1.0, 1.0, m as f64);
                        let colour = PALETTE[i % PALETTE.len()];
                        view! {
                            <line class="target" x1=LEFT x2=W - RIGHT y1=y y2=y stroke=colour/>
                            <polyline class="series" fill="none" stroke=colour
                                points=move || polyline(&points.get(), i, steps.get())>
                                <title>{move || hover(&points.get(), i, m)}</title>
                            </polyline>
                        }
                    })
                    .collect_view()
            }}
        </svg>
        // The legend: one entry per target (solid: achieved similarity; dashed: the target itself).
        <figcaption id="sim-legend" class="legend small">
            {move || targets.get().into_iter().enumerate().map(|(i, m)| view! {
                <span class="key"><span class="swatch" style=format!("background: {}", PALETTE[i % PALETTE.len()])></span>
                    {format!("m = {m:+.2}")}</span>
            }).collect_view()}
            <span class="muted">"solid: similarity of x̂0 to your photo · dashed: target m"</span>
        </figcaption>
        </figure>
    }
}

/// The tooltip of series `i`: its target and latest value.
fn hover(points: &[(u32, Vec<f32>)], i: usize, m: f32) -> String {
    match points
        .iter()
        .rev()
        .find_map(|(step, v)| v.get(i).map(|s| (step, s)))
    {
        Some((step, s)) => format!("m = {m:+.2}: similarity {s:+.3} at step {step}"),
        None => format!("m = {m:+.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_map_steps_left_to_right_and_similarity_bottom_to_top() {
        let pts = vec![(1, vec![-1.0, 0.0]), (5, vec![1.0, 0.5])];
        assert_eq!(
            polyline(&pts, 0, 5),
            format!("{LEFT:.1},{:.1} {:.1},{TOP:.1}", H - BOTTOM, W - RIGHT)
        );
        assert_eq!(polyline(&pts, 1, 5).split(' ').count(), 2);
        assert_eq!(polyline(&pts, 7, 5), "");
        assert_eq!(hover(&pts, 1, 0.5), "m = +0.50: similarity +0.500 at step 5");
        assert_eq!(hover(&[], 0, -1.0), "m = -1.00");
    }
}
