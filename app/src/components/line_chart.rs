//! A small SVG line chart for training curves (loss terms, learning rate, similarity).

use leptos::prelude::*;

use crate::components::sim_chart::PALETTE;

const W: f64 = 440.0;
const H: f64 = 200.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// x and y ranges over all series (a flat range is widened so lines stay visible).
pub fn bounds(series: &[(String, Vec<(f64, f64)>)]) -> Option<((f64, f64), (f64, f64))> {
    let pts = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut any = false;
    for &(x, y) in pts {
        any = true;
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !any {
        return None;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        let pad = y0.abs().max(1e-6) * 0.1;
        (y0, y1) = (y0 - pad, y1 + pad);
    }
    Some(((x0, x1), (y0, y1)))
}

/// SVG polyline points of one series in the chart's frame.
pub fn points(p: &[(f64, f64)], (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> String {
    p.iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| {
            let px = LEFT + (W - LEFT - RIGHT) * (x - x0) / (x1 - x0);
            let py = TOP + (H - TOP - BOTTOM) * (1.0 - (y - y0) / (y1 - y0));
            format!("{px:.1},{py:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One named curve: (name, points (x, y)).
pub type Series = (String, Vec<(f64, f64)>);

/// About `n` round tick values (1, 2 or 5 × 10^k apart) inside [lo, hi].
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || !lo.is_finite()
        || !hi.is_finite()
        || n == 0
    {
        return vec![];
    }
    let raw = (hi - lo) / n as f64;
    let e = raw.log10().floor() as i32;
    // step = d × 10^e; values as k·d scaled by 10^e in one division, so 0.6 prints as 0.6.
    let scale = |x: f64| {
        if e >= 0 {
            x * 10f64.powi(e)
        } else {
            x / 10f64.powi(-e)
        }
    };
    let d = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|d| scale(*d) >= raw)
        .unwrap_or(10.0);
    let step = scale(d);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| scale(k as f64 * d)).collect()
}

/// The hover text of a series: its name and latest value.
pub fn hover(name: &str, p: &[(f64, f64)]) -> String {
    match p.iter().rev().find(|(x, y)| x.is_finite() && y.is_finite()) {
        Some((x, y)) => format!("{name}: {} at step {x}", label(*y)),
        None => name.to_owned(),
    }
}

fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

/// One chart; `series` is (name, [(step, value)]).
#[component]
pub fn LineChart(#[prop(into)] title: String, #[prop(into)] series: Signal<Vec<Series>>) -> impl IntoView {
    let id = format!(
        "chart-{}",
        title.to_lowercase().replace(|c: char| !c.is_alphanumeric(), "-")
    );
    view! {
        <figure class="line-chart" id=id>
            <figcaption>{title.clone()}</figcaption>
            <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img" aria-label=title>
                {move || {
                    let s = series.get();
                    match bounds(&s) {
                        None => view! { <text class="tick" x=LEFT y=H / 2.0>"no data yet"</text> }.into_any(),
                        Some((xr, yr)) => view! {
                            // Round ticks: grid lines with values on y, steps on x.
                            {ticks(yr.0, yr.1, 4).into_iter().map(|v| {
                                let y = TOP + (H - TOP - BOTTOM) * (1.0 - (v - yr.0) / (yr.1 - yr.0));
                                view! {
                                    <line class="grid" x1=LEFT x2=W - RIGHT y1=y y2=y/>
                                    <text class="tick" x=LEFT - 4.0 y=y + 4.0 text-anchor="end">{label(v)}</text>
                                }
                            }).collect_view()}
                            {ticks(xr.0, xr.1, 4).into_iter().map(|v| {
                                let x = LEFT + (W - LEFT - RIGHT) * (v - xr.0) / (xr.1 - xr.0);
                                view! { <text class="tick" x=x y=H - 8.0 text-anchor="middle">{format!("{v}")}</text> }
                            }).collect_view()}
                            <text class="tick" x=W - RIGHT y=H - BOTTOM - 4.0 text-anchor="end">"step"</text>
                            {s.iter().enumerate().map(|(i, (name, p))| {
                                let colour = PALETTE[i % PALETTE.len()];
                                view! {
                                    <polyline class="series" fill="none" stroke=colour points=points(p, xr, yr)>
                                        <title>{hover(name, p)}</title>
                                    </polyline>
                                    <text class="legend" x=W - RIGHT - 4.0 y=TOP + 12.0 + 12.0 * i as f64 text-anchor="end" fill=colour>{name.clone()}</text>
                                }
                            }).collect_view()}
                        }.into_any(),
                    }
                }}
            </svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_span_all_series_and_points_fill_the_frame() {
        let s = vec![
            ("a".to_string(), vec![(1.0, 2.0), (3.0, 4.0)]),
            ("b".to_string(), vec![(2.0, 0.0)]),
        ];
        let (xr, yr) = bounds(&s).unwrap();
        assert_eq!((xr, yr), ((1.0, 3.0), (0.0, 4.0)));
        assert_eq!(
            points(&s[0].1, xr, yr),
            format!(
                "{LEFT:.1},{:.1} {:.1},{TOP:.1}",
                TOP + (H - TOP - BOTTOM) * 0.5,
                W - RIGHT
            )
        );
        assert!(bounds(&[("e".to_string(), vec![])]).is_none());
        let flat = bounds(&[("f".to_string(), vec![(1.0, 5.0)])]).unwrap();
        assert!(flat.1 .0 < 5.0 && flat.1 .1 > 5.0 && flat.0 .1 > flat.0 .0);
    }

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(ticks(0.0, 4000.0, 4), vec![0.0, 1000.0, 2000.0, 3000.0, 4000.0]);
        assert_eq!(ticks(0.34, 0.74, 4), vec![0.4, 0.5, 0.6, 0.7]);
        assert_eq!(ticks(1.0, 1.0, 4), Vec::<f64>::new());
        assert_eq!(hover("mse", &[(1.0, 0.5), (2.0, 0.25)]), "mse: 0.250 at step 2");
    }
}
