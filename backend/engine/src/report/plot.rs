//! Report charts (similarity histograms, loss curves, similarity vs m) drawn with `plotters`: axes
//! with round ticks and their labels, axis titles, a legend, dashed markers, as PNG (through a pixel
//! buffer and the `image` crate) or SVG. Text uses an embedded subset of DejaVu Sans
//! (`fonts/DejaVuSans-charts.ttf`, made by `scripts/subset-font.sh`), so no system font is read.

use std::sync::Once;

use image::{Rgb, RgbImage};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::series::DashedLineSeries;
use plotters::style::{register_font, FontStyle};

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

/// The family name chart text is drawn in.
const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans-charts.ttf");

fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded chart font is a valid TrueType file");
        }
    });
}

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

fn colour(i: usize) -> RGBColor {
    let [r, g, b] = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Tick label: as few decimals as the value needs (at most 3), "0" for −0.
pub fn label(v: f64) -> String {
    let s = (0..=3)
        .map(|d| format!("{v:.d$}"))
        .find(|s| (s.parse::<f64>().unwrap_or(f64::NAN) - v).abs() < 1e-9 * v.abs().max(1.0))
        .unwrap_or_else(|| format!("{v:.3}"));
    if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        "0".into()
    } else {
        s
    }
}

impl Chart {
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let all: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .collect();
        let range = |pick: fn(&(f64, f64)) -> f64, fixed: Option<(f64, f64)>| {
            fixed.unwrap_or_else(|| {
                let lo = all
                    .iter()
                    .map(pick)
                    .filter(|v| v.is_finite())
                    .fold(f64::INFINITY, f64::min);
                let hi = all
                    .iter()
                    .map(pick)
                    .filter(|v| v.is_finite())
                    .fold(f64::NEG_INFINITY, f64::max);
                match (lo.is_finite(), hi > lo) {
                    (true, true) => (lo, hi),
                    (true, false) => (lo - 0.5, lo + 0.5),
                    _ => (0.0, 1.0),
                }
            })
        };
        (range(|p| p.0, self.x_range), range(|p| p.1, self.y_range))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        ensure_font();
        root.fill(&WHITE)?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 20))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .x_labels(8)
            .y_labels(7)
            .x_label_formatter(&|v| label(*v))
            .y_label_formatter(&|v| label(*v))
            .max_light_lines(2)
            .light_line_style(RGBColor(244, 244, 244))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        for (i, &m) in self.x_markers.iter().enumerate() {
            let style = colour(i).stroke_width(1);
            chart.draw_series(DashedLineSeries::new([(m, y0), (m, y1)], 6, 5, style))?;
        }
        let mut labelled = false;
        for (i, s) in self.series.iter().enumerate() {
            let c = colour(i);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            let drawn = if pts.len() == 1 {
                chart.draw_series(PointSeries::of_element(pts, 4, c.filled(), &|p, s, st| {
                    Circle::new(p, s, st)
                }))?
            } else {
                chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            };
            if !s.label.is_empty() {
                labelled = true;
                drawn
                    .label(s.label.clone())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
            }
        }
        if labelled {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(190, 190, 190))
                .label_font((FAMILY, 14))
                .draw()?;
        }
        root.present()
    }

    /// Renders the chart as a `width`×`height` image.
    pub fn render(&self, width: u32, height: u32) -> RgbImage {
        let mut buf = vec![255u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            // Drawing into memory fails only on a size of 0; the image then stays white.
            if let Err(e) = self.draw(&root) {
                tracing::warn!("chart {:?} not drawn: {e}", self.title);
            }
        }
        RgbImage::from_raw(width, height, buf).expect("the buffer has width × height × 3 bytes")
    }

    /// Renders the chart as an SVG document (text stays text).
    pub fn render_svg(&self, width: u32, height: u32) -> String {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
            if let Err(e) = self.draw(&root) {
                tracing::warn!("chart {:?} not drawn: {e}", self.title);
            }
        }
        out
    }

    /// Writes `<stem>.png` and `<stem>.svg` side by side; returns the PNG's path.
    pub fn save(
        &self,
        stem: &std::path::Path,
        width: u32,
        height: u32,
    ) -> std::io::Result<std::path::PathBuf> {
        let png = stem.with_extension("png");
        self.render(width, height)
            .save(&png)
            .map_err(std::io::Error::other)?;
        std::fs::write(stem.with_extension("svg"), self.render_svg(width, height))?;
        Ok(png)
    }
}

/// Draws `text` (`size` px high) with its top-left corner at (x, y) on `img`, in `colour`.
pub fn caption(img: &mut RgbImage, x: i32, y: i32, text: &str, size: u32, colour: [u8; 3]) {
    ensure_font();
    let (w, h) = img.dimensions();
    let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
    let [r, g, b] = colour;
    let style = (FAMILY, size).into_font().color(&RGBColor(r, g, b));
    if let Err(e) = root.draw_text(text, &style, (x, y)) {
        tracing::warn!("caption {text:?} not drawn: {e}");
    }
    let _ = root.present();
}

/// Pixels of `img` that are not white (for tests: did anything get drawn there).
pub fn ink(img: &RgbImage, x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> usize {
    y.flat_map(|j| x.clone().map(move |i| (i, j)))
        .filter(|&(i, j)| i < img.width() && j < img.height() && *img.get_pixel(i, j) != Rgb([255, 255, 255]))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_lines() -> Chart {
        Chart {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "value".into(),
            series: vec![
                Series {
                    label: "MSE".into(),
                    points: vec![(0.0, 0.0), (100.0, 1.0)],
                },
                Series {
                    label: "SimMat".into(),
                    points: vec![(0.0, 1.0), (100.0, 0.0)],
                },
            ],
            x_markers: vec![50.0],
            ..Default::default()
        }
    }

    #[test]
    fn labels_use_the_decimals_they_need() {
        assert_eq!(label(-0.0), "0");
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(-0.5), "-0.5");
        assert_eq!(label(2000.0), "2000");
        assert_eq!(label(1.0 / 3.0), "0.333");
        assert_eq!(label(-1e-12), "0");
    }

    #[test]
    fn png_has_series_in_their_colours_and_text_on_the_axes() {
        let img = two_lines().render(640, 400);
        assert_eq!(img.dimensions(), (640, 400));
        let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
        assert!(
            count(PALETTE[0]) > 300 && count(PALETTE[1]) > 300,
            "{} {}",
            count(PALETTE[0]),
            count(PALETTE[1])
        );
        // Tick labels left of the plot and below it, a title on top: dark anti-aliased text.
        let dark = |x: std::ops::Range<u32>, y: std::ops::Range<u32>| {
            y.flat_map(|j| x.clone().map(move |i| (i, j)))
                .filter(|&(i, j)| img.get_pixel(i, j).0.iter().all(|&v| v < 110))
                .count()
        };
        assert!(dark(0..60, 40..340) > 50, "y tick labels and axis title");
        assert!(dark(70..620, 350..400) > 50, "x tick labels and axis title");
        assert!(dark(250..400, 0..30) > 20, "title");
    }

    #[test]
    fn svg_keeps_text_ticks_legend_and_markers() {
        let svg = two_lines().render_svg(640, 400);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
                    .map(|(v, _)| v.trim())
            })
            .collect();
        // Title, axis titles, every tick value of both axes, the legend.
        let want = [
            "loss", "value", "step", "0", "0.2", "0.4", "0.6", "0.8", "1", "20", "40", "60", "80", "100",
            "MSE", "SimMat",
        ];
        for w in want {
            assert!(texts.contains(&w), "{w} missing from {texts:?}");
        }
        assert!(svg.contains("stroke=\"#0072B2\""), "series colour");
        // The dashed marker at x = 50 is several short segments of the first colour.
        assert!(svg.matches("#0072B2").count() > 5);
    }

    #[test]
    fn captions_draw_text() {
        let mut img = RgbImage::from_pixel(200, 40, Rgb([255, 255, 255]));
        caption(&mut img, 4, 4, "m = -0.5", 16, [0, 0, 0]);
        assert!(ink(&img, 0..100, 0..30) > 40);
        assert_eq!(ink(&img, 120..200, 0..40), 0, "nothing beyond the text");
    }
}
