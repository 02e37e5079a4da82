//! Face-recognition training learns: on two visually distinct "identities" the margin loss falls and
//! the batch accuracy rises within a few SGD steps.

use candle_core::Device;
use cemiface_engine::data::labelled::FolderSet;
use cemiface_engine::optim::sgd::SgdConfig;
use cemiface_engine::recognition::augment::AugmentConfig;
use cemiface_engine::recognition::iresnet::IResNetConfig;
use cemiface_engine::recognition::margin::MarginConfig;
use cemiface_engine::recognition::trainer::{FrConfig, FrSettings, FrTrainer};

#[test]
fn the_margin_loss_falls_on_a_separable_set() {
    let dir = std::env::temp_dir().join(format!("cemiface-frtrain-{}", std::process::id()));
    for (c, name) in [(0u8, "a"), (1, "b")] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for k in 0..8u32 {
            let img = image::RgbImage::from_fn(112, 112, |x, y| {
                let stripe = if c == 0 { (x / 8) % 2 } else { (y / 8) % 2 };
                let v = (stripe * 160 + 40 + k * 5) as u8;
                image::Rgb([v, if c == 0 { 80 } else { 180 }, 255 - v])
            });
            img.save(dir.join(name).join(format!("{k}.png"))).unwrap();
        }
    }
    let cfg = FrConfig {
        backbone: IResNetConfig {
            embedding_dim: 32,
            width: 8,
            ..IResNetConfig::insightface(18)
        },
        head: MarginConfig::Cosface { s: 16.0, m: 0.2 },
        optimizer: SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            milestones: vec![],
            gamma: 0.1,
            warmup_steps: 0,
        },
        train: FrSettings {
            epochs: 10,
            batch_size: 8,
            checkpoint_every: 100,
            seed: 3,
        },
        augment: AugmentConfig::paper(),
        data: None,
    };
    let mut t = FrTrainer::new(cfg, Box::new(FolderSet::open(&dir).unwrap()), &Device::Cpu).unwrap();
    assert_eq!(t.steps_per_epoch(), 2);
    let m: Vec<_> = (0..12).map(|_| t.train_step().unwrap()).collect();
    let first = (m[0].loss + m[1].loss) / 2.0;
    let last = (m[10].loss + m[11].loss) / 2.0;
    assert!(last < 0.5 * first, "loss {first} → {last}");
    assert!(
        m[10].accuracy + m[11].accuracy >= 1.5,
        "{:?}",
        m.iter().map(|x| x.accuracy).collect::<Vec<_>>()
    );
}
