//! Small PNG charts for reports (similarity histograms, loss curves, similarity vs m): axes with
//! ticks, a title, a legend and one polyline per series, drawn with the `image` crate and a built-in
//! 5×7 pixel font, so that reports need neither a plotting stack nor font files.

use image::{Rgb, RgbImage};

/// Series colours (colour-blind-safe Okabe–Ito palette).
pub const PALETTE: [[u8; 3]; 7] = [
    [0, 114, 178],
    [213, 94, 0],
    [0, 158, 115],
    [204, 121, 167],
    [230, 159, 0],
    [86, 180, 233],
    [0, 0, 0],
];

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed axis ranges; by default the data's range.
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Dashed vertical markers (e.g. target m values), coloured like the series of the same index.
    pub x_markers: Vec<f64>,
}

const SCALE: i64 = 2;
const GLYPH_W: i64 = 6 * SCALE;

fn glyph(c: char) -> Option<[u8; 7]> {
    let rows: &str = match c.to_ascii_lowercase() {
        '0' => "01110 10001 10011 10101 11001 10001 01110",
        '1' => "00100 01100 00100 00100 00100 00100 01110",
        '2' => "01110 10001 00001 00010 00100 01000 11111",
        '3' => "11111 00010 00100 00010 00001 10001 01110",
        '4' => "00010 00110 01010 10010 11111 00010 00010",
        '5' => "11111 10000 11110 00001 00001 10001 01110",
        '6' => "00110 01000 10000 11110 10001 10001 01110",
        '7' => "11111 00001 00010 00100 01000 01000 01000",
        '8' => "01110 10001 10001 01110 10001 10001 01110",
        '9' => "01110 10001 10001 01111 00001 00010 01100",
        '.' => "00000 00000 00000 00000 00000 01100 01100",
        ',' => "00000 00000 00000 00000 01100 00100 01000",
        '-' => "00000 00000 00000 11111 00000 00000 00000",
        '+' => "00000 00100 00100 11111 00100 00100 00000",
        '=' => "00000 00000 11111 00000 11111 00000 00000",
        '(' => "00010 00100 01000 01000 01000 00100 00010",
        ')' => "01000 00100 00010 00010 00010 00100 01000",
        '/' => "00000 00001 00010 00100 01000 10000 00000",
        ':' => "00000 01100 01100 00000 01100 01100 00000",
        '%' => "11000 11001 00010 00100 01000 10011 00011",
        '_' => "00000 00000 00000 00000 00000 00000 11111",
        'a' => "00000 00000 01110 00001 01111 10001 01111",
        'b' => "10000 10000 10110 11001 10001 10001 11110",
        'c' => "00000 00000 01110 10000 10000 10001 01110",
        'd' => "00001 00001 01101 10011 10001 10001 01111",
        'e' => "00000 00000 01110 10001 11111 10000 01110",
        'f' => "00110 01001 01000 11100 01000 01000 01000",
        'g' => "00000 01111 10001 10001 01111 00001 01110",
        'h' => "10000 10000 10110 11001 10001 10001 10001",
        'i' => "00100 00000 01100 00100 00100 00100 01110",
        'j' => "00010 00000 00110 00010 00010 10010 01100",
        'k' => "10000 10000 10010 10100 11000 10100 10010",
        'l' => "01100 00100 00100 00100 00100 00100 01110",
        'm' => "00000 00000 11010 10101 10101 10001 10001",
        'n' => "00000 00000 10110 11001 10001 10001 10001",
        'o' => "00000 00000 01110 10001 10001 10001 01110",
        'p' => "00000 00000 11110 10001 11110 10000 10000",
        'q' => "00000 00000 01101 10011 01111 00001 00001",
        'r' => "00000 00000 10110 11001 10000 10000 10000",
        's' => "00000 00000 01110 10000 01110 00001 11110",
        't' => "01000 01000 11100 01000 01000 01001 00110",
        'u' => "00000 00000 10001 10001 10001 10011 01101",
        'v' => "00000 00000 10001 10001 10001 01010 00100",
        'w' => "00000 00000 10001 10001 10101 10101 01010",
        'x' => "00000 00000 10001 01010 00100 01010 10001",
        'y' => "00000 00000 10001 10001 01111 00001 01110",
        'z' => "00000 00000 11111 00010 00100 01000 11111",
        _ => return None,
    };
    let mut out = [0u8; 7];
    for (o, r) in out.iter_mut().zip(rows.split(' ')) {
        *o = u8::from_str_radix(r, 2).unwrap_or(0);
    }
    Some(out)
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

/// Draws `text` with its top-left corner at (x, y); returns its width in pixels.
pub fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: [u8; 3]) -> i64 {
    for (k, ch) in s.chars().enumerate() {
        let Some(g) = glyph(ch) else { continue };
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5 {
                if bits & (1 << (4 - col)) != 0 {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        put(
                            img,
                            x + k as i64 * GLYPH_W + col * SCALE + dx,
                            y + row as i64 * SCALE + dy,
                            c,
                        );
                    }
                }
            }
        }
    }
    s.chars().count() as i64 * GLYPH_W
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], dashed: bool) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
    for i in 0..=n {
        if dashed && (i / 4) % 2 == 1 {
            continue;
        }
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        put(img, x.round() as i64, y.round() as i64, c);
        put(img, x.round() as i64 + 1, y.round() as i64, c);
        put(img, x.round() as i64, y.round() as i64 + 1, c);
    }
}

/// About five round tick values covering [lo, hi].
pub fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn label(v: f64) -> String {
    let s = if v.abs() >= 1000.0 || v == v.round() {
        format!("{v:.0}")
    } else if (v * 10.0 - (v * 10.0).round()).abs() < 1e-9 {
        format!("{v:.1}")
    } else if (v * 100.0 - (v * 100.0).round()).abs() < 1e-9 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

impl Chart {
    /// Renders the chart as a `width`×`height` image.
    pub fn render(&self, width: u32, height: u32) -> RgbImage {
        let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
        let all: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .collect();
        let range = |pick: fn(&(f64, f64)) -> f64, fixed: Option<(f64, f64)>| {
            fixed.unwrap_or_else(|| {
                let lo = all.iter().map(pick).fold(f64::INFINITY, f64::min);
                let hi = all.iter().map(pick).fold(f64::NEG_INFINITY, f64::max);
                match (lo.is_finite(), hi > lo) {
                    (true, true) => (lo, hi),
                    (true, false) => (lo - 0.5, lo + 0.5),
                    _ => (0.0, 1.0),
                }
            })
        };
        let (x0, x1) = range(|p| p.0, self.x_range);
        let (y0, y1) = range(|p| p.1, self.y_range);
        let (left, right, top, bottom) = (80.0, width as f64 - 20.0, 40.0, height as f64 - 50.0);
        let px = |x: f64| left + (x - x0) / (x1 - x0) * (right - left);
        let py = |y: f64| bottom - (y - y0) / (y1 - y0) * (bottom - top);
        let (ink, grid) = ([40, 40, 40], [225, 225, 225]);
        for t in ticks(x0, x1) {
            line(&mut img, (px(t), top), (px(t), bottom), grid, false);
            let s = label(t);
            text(
                &mut img,
                px(t) as i64 - s.len() as i64 * GLYPH_W / 2,
                bottom as i64 + 6,
                &s,
                ink,
            );
        }
        for t in ticks(y0, y1) {
            line(&mut img, (left, py(t)), (right, py(t)), grid, false);
            let s = label(t);
            text(
                &mut img,
                left as i64 - 6 - s.len() as i64 * GLYPH_W,
                py(t) as i64 - 7,
                &s,
                ink,
            );
        }
        line(&mut img, (left, bottom), (right, bottom), ink, false);
        line(&mut img, (left, top), (left, bottom), ink, false);
        text(&mut img, left as i64, 10, &self.title, ink);
        let xl = self.x_label.chars().count() as i64 * GLYPH_W;
        text(
            &mut img,
            ((left + right) / 2.0) as i64 - xl / 2,
            height as i64 - 22,
            &self.x_label,
            ink,
        );
        text(&mut img, 4, top as i64 - 24 + 10, &self.y_label, ink);
        for (i, &m) in self.x_markers.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            line(&mut img, (px(m), top), (px(m), bottom), c, true);
        }
        let mut legend_y = top as i64 + 4;
        for (i, s) in self.series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            for w in s.points.windows(2) {
                line(
                    &mut img,
                    (px(w[0].0), py(w[0].1)),
                    (px(w[1].0), py(w[1].1)),
                    c,
                    false,
                );
            }
            if s.points.len() == 1 {
                let (x, y) = (px(s.points[0].0), py(s.points[0].1));
                line(&mut img, (x - 3.0, y), (x + 3.0, y), c, false);
            }
            if !s.label.is_empty() {
                let w = s.label.chars().count() as i64 * GLYPH_W;
                let x = right as i64 - w - 8;
                line(
                    &mut img,
                    ((x - 26) as f64, (legend_y + 7) as f64),
                    ((x - 6) as f64, (legend_y + 7) as f64),
                    c,
                    false,
                );
                text(&mut img, x, legend_y, &s.label, c);
                legend_y += 20;
            }
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(-1.0, 1.0), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(ticks(0.0, 100.0), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let t = ticks(0.013, 0.087);
        assert!(
            t.len() >= 3 && t[0] >= 0.013 && *t.last().unwrap() <= 0.087,
            "{t:?}"
        );
        assert_eq!(label(-0.0), "0");
        assert_eq!(label(0.25), "0.25");
    }

    #[test]
    fn series_are_drawn_in_their_colours() {
        let chart = Chart {
            title: "loss".into(),
            series: vec![
                Series {
                    label: "a".into(),
                    points: vec![(0.0, 0.0), (1.0, 1.0)],
                },
                Series {
                    label: "b".into(),
                    points: vec![(0.0, 1.0), (1.0, 0.0)],
                },
            ],
            ..Default::default()
        };
        let img = chart.render(320, 240);
        let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
        assert!(count(PALETTE[0]) > 100 && count(PALETTE[1]) > 100);
        // Text renders: every known glyph has ink, unknown characters are skipped.
        let mut blank = RgbImage::new(40, 20);
        assert_eq!(text(&mut blank, 0, 0, "m=0", [255, 255, 255]), 3 * GLYPH_W);
        assert!(blank.pixels().any(|p| p.0 == [255, 255, 255]));
        assert!("0123456789abcdefghijklmnopqrstuvwxyz.-+=()/:%"
            .chars()
            .all(|c| glyph(c).is_some_and(|g| g.iter().any(|r| *r != 0))));
    }
}
