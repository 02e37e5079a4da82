//! Photo → face → aligned crops: the tiny face detector finds faces, the 68-point net places
//! landmarks, and a similarity transform cuts out (a) dlib's 150×150 face chip, framed exactly as
//! dlib's `get_face_chip_details(shape, 150, 0.25)` frames it, and (b) the ArcFace 112×112 crop.

use std::path::Path;

use candle_core::Device;
use image::RgbImage;

use crate::assets;
use crate::face::landmark68::FaceLandmark68;
use crate::face::tiny_face_detector::{FaceBox, TinyFaceDetector};
use crate::face::warp::{pyramid_down, warp_bilinear, Similarity};
use crate::tfjs;
use crate::{Error, Result};

/// The ArcFace/insightface 5-point template at 112×112 (eyes, nose tip, mouth corners).
pub const ARCFACE_112: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// dlib's mean face (`interpolation.h`), points 17–67 of the 68-point layout, in [0, 1].
const DLIB_MEAN_X: [f64; 51] = [
    0.000213256,
    0.0752622,
    0.18113,
    0.29077,
    0.393397,
    0.586856,
    0.689483,
    0.799124,
    0.904991,
    0.98004,
    0.490127,
    0.490127,
    0.490127,
    0.490127,
    0.36688,
    0.426036,
    0.490127,
    0.554217,
    0.613373,
    0.121737,
    0.187122,
    0.265825,
    0.334606,
    0.260918,
    0.182743,
    0.645647,
    0.714428,
    0.793132,
    0.858516,
    0.79751,
    0.719335,
    0.254149,
    0.340985,
    0.428858,
    0.490127,
    0.551395,
    0.639268,
    0.726104,
    0.642159,
    0.556721,
    0.490127,
    0.423532,
    0.338094,
    0.290379,
    0.428096,
    0.490127,
    0.552157,
    0.689874,
    0.553364,
    0.490127,
    0.42689,
];
const DLIB_MEAN_Y: [f64; 51] = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915, 0.106454,
    0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326, 0.216423,
    0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077,
    0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805, 0.902192,
    0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803,
    0.824182,
];

/// Smallest face side (pixels, in the photo) the pipeline accepts.
pub const MIN_FACE: f32 = 40.0;

/// The result of aligning one photo.
#[derive(Debug, Clone)]
pub struct AlignedFace {
    /// The face used (the largest found).
    pub face: FaceBox,
    /// How many faces the detector found.
    pub faces_found: usize,
    /// The 68 landmarks in photo coordinates.
    pub landmarks: Vec<[f64; 2]>,
    /// dlib's 150×150 chip.
    pub chip: RgbImage,
    /// The ArcFace 112×112 crop.
    pub arcface: RgbImage,
}

impl AlignedFace {
    /// Share of the 68 landmarks that lie outside a `width` × `height` photo: 0 for a whole face;
    /// a face cut by the photo's edge has its jaw line (and more) outside, where the landmark
    /// network extrapolates them and the aligned crop is padded.
    pub fn cut_off(&self, width: u32, height: u32) -> f64 {
        outside(&self.landmarks, width as f64, height as f64)
    }
}

fn outside(landmarks: &[[f64; 2]], w: f64, h: f64) -> f64 {
    let n = landmarks
        .iter()
        .filter(|p| p[0] < 0.0 || p[1] < 0.0 || p[0] >= w || p[1] >= h)
        .count();
    n as f64 / landmarks.len().max(1) as f64
}

/// The five ArcFace points from 68 landmarks: eye centres, nose tip, mouth corners.
pub fn five_points(l: &[[f64; 2]]) -> [[f64; 2]; 5] {
    let mean = |r: std::ops::Range<usize>| {
        let n = r.len() as f64;
        let s = r.fold([0.0, 0.0], |s, i| [s[0] + l[i][0], s[1] + l[i][1]]);
        [s[0] / n, s[1] / n]
    };
    [mean(36..42), mean(42..48), l[30], l[48], l[54]]
}

/// Chip pixel → photo map of dlib's `get_face_chip_details(det, size, padding)` followed by
/// `extract_image_chip` (which maps the rotated rect's corners onto pixels 0 … size−1).
pub fn dlib_chip_transform(landmarks: &[[f64; 2]], size: usize, padding: f64) -> Similarity {
    let mut chip_pts = Vec::new();
    let mut img_pts = Vec::new();
    for i in 17..68 {
        // dlib leaves out the eyebrows and the lower lip.
        if (17..=26).contains(&i) || (55..=59).contains(&i) || (65..=67).contains(&i) {
            continue;
        }
        let p = |m: f64| (padding + m) / (2.0 * padding + 1.0) * size as f64;
        chip_pts.push([p(DLIB_MEAN_X[i - 17]), p(DLIB_MEAN_Y[i - 17])]);
        img_pts.push(landmarks[i]);
    }
    let t = Similarity::fit(&chip_pts, &img_pts);
    let centre = t.apply([size as f64 / 2.0, size as f64 / 2.0]);
    // The chip rect is size·scale wide, spread over size − 1 pixel steps.
    let k = size as f64 / (size as f64 - 1.0);
    let (a, b) = (t.a * k, t.b * k);
    let half = (size as f64 - 1.0) / 2.0;
    Similarity {
        a,
        b,
        tx: centre[0] - (a * half - b * half),
        ty: centre[1] - (b * half + a * half),
    }
}

/// Crop pixel → photo map of the ArcFace 112 alignment (Umeyama fit of the five points), for an
/// output of `size` (the template is scaled from 112).
pub fn arcface_transform(landmarks: &[[f64; 2]], size: usize) -> Similarity {
    let s = size as f64 / 112.0;
    let template: Vec<[f64; 2]> = ARCFACE_112.iter().map(|p| [p[0] * s, p[1] * s]).collect();
    Similarity::fit(&template, &five_points(landmarks))
}

/// Samples a `size`² crop through `crop_to_img`, first halving the photo (low-pass) while the crop
/// would shrink it by more than 2×, as dlib's pyramid does.
pub fn extract(img: &RgbImage, crop_to_img: &Similarity, size: usize) -> RgbImage {
    let mut src = std::borrow::Cow::Borrowed(img);
    let mut t = *crop_to_img;
    while t.scale() > 2.0 && src.width() > 2 * size as u32 {
        src = std::borrow::Cow::Owned(pyramid_down(&src));
        t = Similarity {
            a: t.a / 2.0,
            b: t.b / 2.0,
            tx: t.tx / 2.0,
            ty: t.ty / 2.0,
        };
    }
    let chw = warp_bilinear(&src, &t, size, size);
    let plane = size * size;
    RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let i = y as usize * size + x as usize;
        let v = |c: usize| chw[c * plane + i].round().clamp(0.0, 255.0) as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

/// An aligned crop as the detector can judge it: the detector is made for faces inside a scene, not
/// for crops that fill the frame, so the crop is placed on a 320-px grey canvas at 160, 224 and 96 px.
fn on_canvases(crop: &RgbImage) -> impl Iterator<Item = RgbImage> + '_ {
    [160u32, 224, 96].into_iter().map(move |side| {
        let big = image::imageops::resize(crop, side, side, image::imageops::FilterType::Triangle);
        let mut canvas = RgbImage::from_pixel(320, 320, image::Rgb([128, 128, 128]));
        let at = ((320 - side) / 2) as i64;
        image::imageops::replace(&mut canvas, &big, at, at);
        canvas
    })
}

/// The detector score above which an aligned crop counts as a face (`finds_face`): face-api's
/// default for scenes.
pub const FACE_SCORE: f32 = 0.5;

/// Detector + landmark net.
pub struct FaceAligner {
    detector: TinyFaceDetector,
    landmarks: FaceLandmark68,
}

impl FaceAligner {
    /// Loads both networks from the assets folder (`scripts/setup.sh` fetches them).
    pub fn load(assets_dir: &Path, device: &Device) -> Result<Self> {
        let manifest = |group: &str, file: &str| -> Result<std::path::PathBuf> {
            let p = assets_dir.join("face-api").join(file);
            if p.exists() {
                Ok(p)
            } else {
                let known = assets::pinned().iter().any(|f| f.group == group);
                Err(Error::Config(format!(
                    "{} is missing (asset group `{group}`{}): run scripts/setup.sh",
                    p.display(),
                    if known { "" } else { ", unknown" }
                )))
            }
        };
        let det = manifest(
            "tiny-face-detector",
            "tiny_face_detector_model-weights_manifest.json",
        )?;
        let lm = manifest("face-landmark-68", "face_landmark_68_model-weights_manifest.json")?;
        Ok(Self {
            detector: TinyFaceDetector::new(tfjs::var_builder(&det, device)?)?,
            landmarks: FaceLandmark68::new(tfjs::var_builder(&lm, device)?)?,
        })
    }

    /// Whether the detector finds a face in an aligned crop (a generated 64×64 face, say): a box
    /// scoring above `FACE_SCORE` on any of the canvases of `on_canvases` (stops at the first).
    pub fn finds_face(&self, crop: &RgbImage) -> Result<bool> {
        for canvas in on_canvases(crop) {
            if !self.detector.detect(&canvas, 416, FACE_SCORE)?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The detector's best score for a face in an aligned crop, over the canvases of `on_canvases`.
    pub fn face_score(&self, crop: &RgbImage) -> Result<f32> {
        let mut best = 0f32;
        for canvas in on_canvases(crop) {
            // Boxes come best first.
            if let Some(face) = self.detector.detect(&canvas, 416, 0.0)?.first() {
                best = best.max(face.score);
            }
        }
        Ok(best)
    }

    /// Finds the largest face of `img` and aligns it. `name` names the photo in errors.
    pub fn align(&self, img: &RgbImage, name: &str) -> Result<AlignedFace> {
        let mut faces = self.detector.detect(img, 416, 0.5)?;
        if faces.is_empty() {
            faces = self.detector.detect(img, 608, 0.5)?; // finer grid for small faces
        }
        let faces_found = faces.len();
        let Some(face) = faces.into_iter().max_by(|a, b| a.area().total_cmp(&b.area())) else {
            return Err(Error::NoFace { image: name.into() });
        };
        let side = face.width.min(face.height);
        if side < MIN_FACE {
            return Err(Error::FaceTooSmall {
                image: name.into(),
                side: side.round() as u32,
                min: MIN_FACE as u32,
            });
        }
        let landmarks = self.landmarks.landmarks(img, &face)?;
        let chip = extract(img, &dlib_chip_transform(&landmarks, 150, 0.25), 150);
        let arcface = extract(img, &arcface_transform(&landmarks, 112), 112);
        Ok(AlignedFace {
            face,
            faces_found,
            landmarks,
            chip,
            arcface,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_off_counts_landmarks_outside_the_photo() {
        let pts: Vec<[f64; 2]> = (0..68).map(|i| [i as f64 * 2.0 - 20.0, 50.0]).collect();
        // x from −20 to 114: 10 points left of 0, 8 at or right of 100.
        assert!((outside(&pts, 100.0, 100.0) - 18.0 / 68.0).abs() < 1e-12);
        assert_eq!(outside(&pts, 200.0, 100.0), 10.0 / 68.0);
        assert_eq!(outside(&[], 10.0, 10.0), 0.0);
    }
}
