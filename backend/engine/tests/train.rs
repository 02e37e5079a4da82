//! Generator training on the DCGAN stream: the loss goes down, and a resumed run continues with the
//! same losses as an uninterrupted one; μ of the reference faces is saved with each checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use cemiface_engine::data::dcgan::Dcgan;
use cemiface_engine::data::sources::DcganSource;
use cemiface_engine::diffusion::condition::ConditionConfig;
use cemiface_engine::diffusion::generator::Generator;
use cemiface_engine::diffusion::schedule::ScheduleConfig;
use cemiface_engine::diffusion::sim_mat::SimMatForm;
use cemiface_engine::diffusion::trainer::{DataConfig, EncoderConfig, TrainConfig, TrainSettings, Trainer};
use cemiface_engine::diffusion::unet::UNetConfig;
use cemiface_engine::identity::encoder::{DlibEncoder, IdentityEncoder};
use cemiface_engine::optim::adamw::AdamWConfig;

fn assets() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    if dir.join("gan-face-generate/weights.tar").exists() && dir.join("face-api").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
        "run scripts/setup.sh"
    );
    None
}

fn tiny_config() -> TrainConfig {
    TrainConfig {
        model: UNetConfig {
            image_size: 32,
            in_channels: 3,
            out_channels: 3,
            model_channels: 32,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![2],
            num_head_channels: 32,
            skip_downsample_levels: vec![],
            condition: ConditionConfig {
                id_dim: 128,
                sim_dim: 32,
                tokens: 1,
            },
        },
        schedule: ScheduleConfig::default(),
        optimizer: AdamWConfig {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
        },
        train: TrainSettings {
            batch_size: 2,
            steps: 8,
            lambda: 0.05,
            m_step: 0.04,
            sim_mat_form: SimMatForm::Absolute,
            ema_max_decay: 0.9999,
            checkpoint_every: 3,
            seed: 11,
            centre_reference: 4,
        },
        data: DataConfig::Dcgan {
            weights: None,
            min_luma: 0.2,
            min_flip_cos: -1.0,
        },
        encoder: EncoderConfig::Dlib,
    }
}

fn trainer(dir: &std::path::Path, cfg: &TrainConfig) -> Trainer {
    let dev = Device::Cpu;
    let enc: Arc<dyn IdentityEncoder> = Arc::new(DlibEncoder::load(dir, &dev).unwrap());
    let gan = Dcgan::load(&dir.join("gan-face-generate/weights.tar"), &dev).unwrap();
    let source = DcganSource::new(gan, cfg.model.image_size, 0.2, -1.0, None);
    Trainer::new(cfg.clone(), enc, Box::new(source), &dev).unwrap()
}

#[test]
fn the_loss_goes_down_and_resume_is_exact() {
    let Some(dir) = assets() else { return };
    let cfg = tiny_config();
    let run = std::env::temp_dir().join(format!("cemiface-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);

    let mut a = trainer(&dir, &cfg);
    let mut losses = Vec::new();
    for _ in 0..8 {
        let m = a.train_step().unwrap();
        assert!(m.loss.is_finite() && m.images_per_s > 0.0);
        losses.push((m.loss, m.mse));
        if a.step() == 4 {
            a.save(&run).unwrap();
        }
    }
    let mean = |v: &[(f32, f32)]| v.iter().map(|x| x.1).sum::<f32>() / v.len() as f32;
    eprintln!(
        "mse per step: {:?}",
        losses.iter().map(|x| x.1).collect::<Vec<_>>()
    );
    assert!(
        mean(&losses[6..]) < mean(&losses[..2]),
        "MSE did not go down: {losses:?}"
    );

    // A new process picks up the step-4 checkpoint and reproduces steps 5..8.
    let ckpt = cemiface_engine::run_dir::latest_checkpoint(&run).unwrap();
    assert!(ckpt.ends_with("step_00000004"));
    // μ of the reference faces travels with the checkpoint, and the generator loaded from it
    // measures centred similarities with exactly that μ.
    let mu = a
        .identity_mean()
        .expect("centre_reference > 0")
        .mean
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(mu.len(), 128);
    let g = Generator::load(&ckpt, false, &dir, &Device::Cpu).unwrap();
    assert!(g.encoder().centred());
    let loaded = g.mean.as_ref().expect("checkpoint has μ");
    assert_eq!(loaded.mean.flatten_all().unwrap().to_vec1::<f32>().unwrap(), mu);
    assert_eq!(loaded.provenance.count, 4);
    let mut b = trainer(&dir, &cfg);
    b.load(&ckpt).unwrap();
    assert_eq!(b.step(), 4);
    for want in &losses[4..] {
        let got = b.train_step().unwrap();
        assert!(
            (got.loss - want.0).abs() <= 1e-4 * want.0.abs().max(1.0),
            "step {}: {} vs {}",
            got.step,
            got.loss,
            want.0
        );
    }
    let _ = std::fs::remove_dir_all(&run);
}

#[test]
fn configs_are_strict_and_the_encoder_width_must_match() {
    let Some(dir) = assets() else { return };
    let text = toml_like_json_with_unknown_field();
    let err = serde_json::from_str::<TrainConfig>(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field"), "{err}");
    let mut cfg = tiny_config();
    cfg.model.condition.id_dim = 512;
    let dev = Device::Cpu;
    let enc: Arc<dyn IdentityEncoder> = Arc::new(DlibEncoder::load(&dir, &dev).unwrap());
    let gan = Dcgan::load(&dir.join("gan-face-generate/weights.tar"), &dev).unwrap();
    let err = Trainer::new(
        cfg,
        enc,
        Box::new(DcganSource::new(gan, 32, 0.2, -1.0, None)),
        &dev,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("id_dim is 512") && err.contains("128-d"), "{err}");
}

fn toml_like_json_with_unknown_field() -> String {
    let mut v = serde_json::to_value(tiny_config()).unwrap();
    v["train"]["learning_rate_typo"] = serde_json::json!(0.1);
    v.to_string()
}
