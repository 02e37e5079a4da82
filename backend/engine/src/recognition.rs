//! Face recognition on the synthetic data (docs/paper.md §4): IResNet backbones, CosFace/ArcFace margin
//! heads, the training augmentations, the FR trainer, and 10-fold verification on LFW-style pairs.

pub mod augment;
pub mod iresnet;
pub mod margin;
pub mod trainer;
pub mod verification;
