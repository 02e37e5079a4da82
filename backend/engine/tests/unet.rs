//! UNet shapes and sizes.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::diffusion::condition::ConditionConfig;
use cemiface_engine::diffusion::unet::{timestep_embedding, UNet, UNetConfig};

fn build(cfg: UNetConfig) -> (UNet, VarMap) {
    let vm = VarMap::new();
    let net = UNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    (net, vm)
}

fn count(vm: &VarMap, prefix: Option<&str>) -> usize {
    vm.data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| prefix.is_none_or(|p| k.starts_with(p)))
        .map(|(_, v)| v.elem_count())
        .sum()
}

#[test]
fn paper_preset_has_the_guided_diffusion_key_layout_and_size() {
    let (_, vm) = build(UNetConfig::paper_112());
    let total = count(&vm, None);
    let cond = count(&vm, Some("cond."));
    let unet = total - cond;
    eprintln!("paper-112: UNet {unet}, condition {cond}");
    {
        let data = vm.data().lock().unwrap();
        for key in [
            "time_embed.0.weight",
            "time_embed.2.weight",
            "input_blocks.0.0.weight",
            "input_blocks.1.0.in_layers.0.weight",
            "input_blocks.1.0.emb_layers.1.weight",
            "input_blocks.1.0.out_layers.3.weight",
            "middle_block.1.qkv.weight",
            "middle_block.1.proj_out.weight",
            "output_blocks.0.0.skip_connection.weight",
            "out.2.weight",
            "cond.att_proj.weight",
        ] {
            assert!(data.contains_key(key), "missing {key}");
        }
        assert_eq!(data["middle_block.1.qkv.weight"].dims(), &[1536, 512, 1]);
        // 4 attention blocks: encoder level 4, middle, 2 in decoder level 4.
        let attn = data.keys().filter(|k| k.ends_with(".qkv.weight")).count();
        assert_eq!(attn, 4);
    }
    assert!(
        (unet as f64 - 93.6e6).abs() / 93.6e6 < 0.02,
        "UNet has {unet} parameters"
    );
}

#[test]
fn demo_preset_is_small_enough_for_a_cpu_and_runs_at_64() {
    let (net, vm) = build(UNetConfig::demo_64());
    let n = count(&vm, None);
    eprintln!("demo-64: {n} parameters");
    assert!(n > 5_000_000 && n < 20_000_000, "{n}");
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &dev).unwrap();
    let t = Tensor::new(&[500u32], &dev).unwrap();
    let id = Tensor::zeros((1, 128), DType::F32, &dev).unwrap();
    let m = Tensor::new(&[0f32], &dev).unwrap();
    assert_eq!(net.forward(&x, &t, &id, &m).unwrap().dims(), &[1, 3, 64, 64]);
}

#[test]
fn a_small_model_maps_shapes_through_every_block() {
    let cfg = UNetConfig {
        image_size: 32,
        in_channels: 3,
        out_channels: 6,
        model_channels: 32,
        channel_mult: vec![1, 2, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![4],
        num_head_channels: 32,
        skip_downsample_levels: vec![],
        condition: ConditionConfig {
            id_dim: 128,
            sim_dim: 64,
            tokens: 2,
        },
    };
    let (net, _) = build(cfg);
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &dev).unwrap();
    let t = Tensor::new(&[10u32, 900], &dev).unwrap();
    let id = Tensor::randn(0f32, 1., (2, 128), &dev).unwrap();
    let m = Tensor::new(&[0f32, -0.5], &dev).unwrap();
    let eps = net.forward(&x, &t, &id, &m).unwrap();
    assert_eq!(eps.dims(), &[2, 3, 32, 32]);
    // Zero-initialised output conv: a fresh model predicts ε = 0.
    assert_eq!(
        eps.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(),
        0.0
    );
}

#[test]
fn timestep_embedding_is_cos_then_sin() {
    let t = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let e = timestep_embedding(&t, 4).unwrap().to_vec2::<f32>().unwrap();
    // freqs = [1, 0.01]; t = 1 → [cos 1, cos 0.01, sin 1, sin 0.01]
    assert_eq!(e[0], vec![1.0, 1.0, 0.0, 0.0]);
    let want = [1f32.cos(), 0.01f32.cos(), 1f32.sin(), 0.01f32.sin()];
    for (a, b) in e[1].iter().zip(want) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn configs_that_cannot_work_are_rejected() {
    let mut cfg = UNetConfig::paper_112();
    cfg.attention_resolutions = vec![3];
    assert!(UNet::new(cfg, VarBuilder::zeros(DType::F32, &Device::Cpu)).is_err());
    let mut cfg = UNetConfig::paper_112();
    cfg.image_size = 100;
    let err = UNet::new(cfg, VarBuilder::zeros(DType::F32, &Device::Cpu))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not divisible"), "{err}");
}
