//! Shapes through each UNet building block on its own.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::diffusion::condition::{Condition, ConditionConfig};
use cemiface_engine::diffusion::unet::attention::AttentionBlock;
use cemiface_engine::diffusion::unet::res_block::{ResBlock, Resample};

fn vb(vm: &VarMap) -> VarBuilder<'static> {
    VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu)
}

#[test]
fn res_blocks_keep_halve_or_double_the_resolution_and_change_width() {
    let vm = VarMap::new();
    let x = Tensor::randn(0f32, 1., (2, 32, 8, 8), &Device::Cpu).unwrap();
    let emb = Tensor::randn(0f32, 1., (2, 128), &Device::Cpu).unwrap();
    for (r, cout, side) in [
        (Resample::None, 64, 8),
        (Resample::Down, 32, 4),
        (Resample::Up, 32, 16),
    ] {
        let block = ResBlock::new(32, cout, 128, r, vb(&vm).pp(format!("{r:?}"))).unwrap();
        assert_eq!(
            block.forward(&x, &emb).unwrap().dims(),
            &[2, cout, side, side],
            "{r:?}"
        );
    }
}

#[test]
fn attention_accepts_prepended_condition_tokens() {
    let vm = VarMap::new();
    let block = AttentionBlock::new(64, 32, vb(&vm)).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 64, 4, 4), &Device::Cpu).unwrap();
    assert_eq!(block.forward(&x, None).unwrap().dims(), &[2, 64, 4, 4]);
    let kv = Tensor::randn(0f32, 1., (2, 128, 3), &Device::Cpu).unwrap();
    let out = block.forward(&x, Some(&kv)).unwrap();
    assert_eq!(out.dims(), &[2, 64, 4, 4]);
    // proj_out starts at zero: the block is the identity until trained.
    let d = (out - &x)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
    assert!(AttentionBlock::new(60, 32, vb(&vm).pp("bad")).is_err());
}

#[test]
fn the_condition_makes_kv_tokens_for_every_head() {
    let vm = VarMap::new();
    let cond = Condition::new(
        &ConditionConfig {
            id_dim: 128,
            sim_dim: 16,
            tokens: 3,
        },
        64,
        vb(&vm),
    )
    .unwrap();
    let id = Tensor::randn(0f32, 1., (2, 128), &Device::Cpu).unwrap();
    let m = Tensor::new(&[0.0f32, 0.5], &Device::Cpu).unwrap();
    let kv = cond.forward(&id, &m).unwrap();
    assert_eq!(kv.dims(), &[2, 128, 3]);
    // m changes the tokens.
    let kv2 = cond
        .forward(&id, &Tensor::new(&[1.0f32, 0.5], &Device::Cpu).unwrap())
        .unwrap();
    let diff = (kv - kv2)
        .unwrap()
        .abs()
        .unwrap()
        .sum(1)
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(diff[0] > 0.0 && diff[1] == 0.0);
}
