//! The identity network E_id behind one interface (`encoder::IdentityEncoder`): dlib's ResNet (128-d,
//! the offline default), IResNet checkpoints (512-d), MobileFace (the independent judge), and the
//! centring that makes dlib's cosines a usable similarity scale (docs/centring.md).

pub mod centring;
pub mod dlib_resnet;
pub mod encoder;
pub mod mobileface;
