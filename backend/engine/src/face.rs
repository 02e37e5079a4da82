//! From a photo to an aligned face chip: the Tiny Face Detector, the 68-point landmark network, the
//! similarity transform to ArcFace's 5-point template and the bilinear warp (what every identity
//! network expects as input).

pub mod affine_resample;
pub mod align;
pub mod landmark68;
pub mod tiny_face_detector;
pub mod warp;
