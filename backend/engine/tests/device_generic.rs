//! The device-generic path (Candle's composed ops: what a CUDA GPU runs) against the fast CPU
//! kernels, forced on this CPU with `kernels::with_generic`: same values and the same gradients for
//! every custom op, for whole networks built from them, and for a seeded DDIM-20 sample.

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::diffusion::condition::ConditionConfig;
use cemiface_engine::diffusion::ddim::Ddim;
use cemiface_engine::diffusion::schedule::{NoiseSchedule, ScheduleConfig};
use cemiface_engine::diffusion::unet::{UNet, UNetConfig};
use cemiface_engine::identity::dlib_resnet::DlibResNet;
use cemiface_engine::nn::conv::conv2d_bias;
use cemiface_engine::nn::group_norm::GroupNorm;
use cemiface_engine::nn::kernels::{path, with_generic, KernelPath};
use cemiface_engine::noise::NoiseRng;
use cemiface_engine::optim::adamw::{AdamW, AdamWConfig};
use cemiface_engine::optim::ema::Ema;

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// max |a − b| / max |b|.
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap()) / max_abs(b).max(1e-6)
}

/// Runs `f` on the fast path and on the forced generic path; returns both results.
fn both<R>(f: impl Fn() -> R) -> (R, R) {
    assert_eq!(
        path(&[&Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap()]),
        KernelPath::FastCpu,
        "run without CEMIFACE_KERNELS=generic: this test compares the two paths"
    );
    (f(), with_generic(&f))
}

/// Forward value and gradients (wrt `vars`, in order) of ⟨net(), probe⟩.
fn value_and_grads(y: Tensor, probe: &Tensor, vars: &[Var]) -> (Tensor, Vec<Tensor>) {
    let g = (&y * probe).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = vars
        .iter()
        .map(|v| g.get(v).expect("every variable gets a gradient").clone())
        .collect();
    (y, grads)
}

fn randomise(vm: &VarMap, std: f32) {
    for v in vm.all_vars() {
        let r = Tensor::randn(0f32, std, v.shape(), &Device::Cpu).unwrap();
        v.set(&r).unwrap();
    }
}

/// Forward within `tol` relative; each gradient within `10·tol` of its own scale, floored at 1e-3 of
/// the largest gradient (the biases of convolutions that feed a GroupNorm have a true gradient of 0,
/// so both paths give rounding noise of ≈ 1e-7 there).
fn assert_same(fast: &(Tensor, Vec<Tensor>), generic: &(Tensor, Vec<Tensor>), tol: f32, what: &str) {
    let d = rel(&fast.0, &generic.0);
    assert!(d < tol, "{what}: forward differs by {d}");
    let largest = generic.1.iter().map(max_abs).fold(0f32, f32::max);
    for (i, (a, b)) in fast.1.iter().zip(&generic.1).enumerate() {
        let scale = max_abs(b).max(1e-3 * largest).max(1e-12);
        let d = max_abs(&(a - b).unwrap()) / scale;
        assert!(d < 10.0 * tol, "{what}: gradient {i} differs by {d} of {scale}");
    }
}

#[test]
fn convolution_with_and_without_bias() {
    let dev = Device::Cpu;
    for (b, cin, hw, cout, k, s, p, bias) in [
        (2, 5, 9, 7, 3, 1, 1, true),
        (3, 4, 10, 6, 3, 2, 1, false),
        (1, 8, 6, 3, 1, 1, 0, true),
        (2, 2, 9, 3, 4, 2, 0, true),
    ] {
        let x = Var::randn(0f32, 1.0, (b, cin, hw, hw), &dev).unwrap();
        let w = Var::randn(0f32, 0.5, (cout, cin, k, k), &dev).unwrap();
        let bv = Var::randn(0f32, 0.5, cout, &dev).unwrap();
        let oh = (hw + 2 * p - k) / s + 1;
        let probe = Tensor::randn(0f32, 1.0, (b, cout, oh, oh), &dev).unwrap();
        let mut vars = vec![x.clone(), w.clone()];
        if bias {
            vars.push(bv.clone());
        }
        let (fast, generic) = both(|| {
            let y = conv2d_bias(x.as_tensor(), w.as_tensor(), bias.then_some(bv.as_tensor()), s, p).unwrap();
            value_and_grads(y, &probe, &vars)
        });
        assert_same(
            &fast,
            &generic,
            1e-5,
            &format!("conv {:?}", (b, cin, hw, cout, k, s, p, bias)),
        );
    }
}

#[test]
fn group_norm_with_adagn_and_silu() {
    let dev = Device::Cpu;
    for (b, c, hw, groups, adagn, silu) in [
        (2, 8, 5, 4, true, true),
        (1, 4, 7, 2, false, false),
        (2, 64, 8, 32, true, true),
    ] {
        let vm = VarMap::new();
        let norm = GroupNorm::new(groups, c, 1e-5, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        randomise(&vm, 0.5);
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (b, c, hw, hw), &dev).unwrap() + 0.7).unwrap())
            .unwrap();
        let scale = Var::randn(0f32, 0.5, (b, c), &dev).unwrap();
        let shift = Var::randn(0f32, 0.5, (b, c), &dev).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (b, c, hw, hw), &dev).unwrap();
        let mut vars = vm.all_vars();
        vars.push(x.clone());
        if adagn {
            vars.extend([scale.clone(), shift.clone()]);
        }
        let (fast, generic) = both(|| {
            let ss = adagn.then_some((scale.as_tensor(), shift.as_tensor()));
            value_and_grads(
                norm.forward_fused(x.as_tensor(), ss, silu).unwrap(),
                &probe,
                &vars,
            )
        });
        assert_same(
            &fast,
            &generic,
            1e-5,
            &format!("group norm {:?}", (b, c, hw, groups, adagn, silu)),
        );
    }
}

#[test]
fn adamw_steps_and_the_ema_update() {
    let dev = Device::Cpu;
    let init = Tensor::randn(0f32, 1.0, (7, 5), &dev).unwrap();
    let cfg = AdamWConfig {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        grad_clip: 0.5,
    };
    let (fast, generic) = both(|| {
        let p = Var::from_tensor(&init.copy().unwrap()).unwrap();
        let vars = vec![("p".to_string(), p.clone())];
        let mut opt = AdamW::new(vars.clone(), cfg.clone()).unwrap();
        let mut ema = Ema::new(&vars, 0.9999).unwrap();
        for k in 0..4u64 {
            let loss = (p.as_tensor().sqr().unwrap() * (k as f64 + 1.0))
                .unwrap()
                .sum_all()
                .unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            ema.update(&vars, k + 3).unwrap();
        }
        // The shadow must hold plain values: one that recorded its op chained every update to
        // the previous one and kept them all alive (a GPU ran out of 141 GiB after ~55 steps).
        assert!(!ema.shadow["p"].track_op(), "the EMA shadow records ops");
        (p.as_tensor().copy().unwrap(), ema.shadow["p"].copy().unwrap())
    });
    assert!(
        rel(&fast.0, &generic.0) <= 1e-6,
        "AdamW: {}",
        rel(&fast.0, &generic.0)
    );
    assert!(
        rel(&fast.1, &generic.1) <= 1e-6,
        "EMA: {}",
        rel(&fast.1, &generic.1)
    );
    assert!(rel(&fast.0, &init) > 1e-3, "the parameters moved");
}

fn small_unet() -> (UNet, VarMap) {
    let cfg = UNetConfig {
        image_size: 16,
        in_channels: 3,
        out_channels: 3,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![2],
        num_head_channels: 32,
        skip_downsample_levels: vec![],
        condition: ConditionConfig {
            id_dim: 16,
            sim_dim: 8,
            tokens: 2,
        },
    };
    let vm = VarMap::new();
    let net = UNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    randomise(&vm, 0.1); // the zero-initialised output would hide every difference
    (net, vm)
}

#[test]
fn unet_forward_and_backward() {
    let dev = Device::Cpu;
    let (net, vm) = small_unet();
    let x = Var::randn(0f32, 1.0, (2, 3, 16, 16), &dev).unwrap();
    let t = Tensor::new(&[10u32, 900], &dev).unwrap();
    let id = Tensor::randn(0f32, 1.0, (2, 16), &dev).unwrap();
    let m = Tensor::new(&[0f32, 0.5], &dev).unwrap();
    let probe = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &dev).unwrap();
    let mut vars = vm.all_vars();
    vars.push(x.clone());
    let (fast, generic) =
        both(|| value_and_grads(net.forward(x.as_tensor(), &t, &id, &m).unwrap(), &probe, &vars));
    assert_same(&fast, &generic, 1e-4, "UNet");
}

#[test]
fn ddim_20_sample_from_one_seed() {
    let dev = Device::Cpu;
    let (net, _vm) = small_unet();
    let sched = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
    let ddim = Ddim::new(sched, 20, 1.0).unwrap();
    let id = Tensor::randn(0f32, 1.0, (1, 16), &dev).unwrap();
    let m = Tensor::new(&[0f32], &dev).unwrap();
    let (fast, generic) = both(|| {
        let mut rngs = vec![NoiseRng::new(42)];
        ddim.sample(
            (3, 16, 16),
            &mut rngs,
            &dev,
            |x, t| net.forward(x, &Tensor::new(&[t as u32], &dev)?, &id, &m),
            |_| ControlFlow::Continue(()),
        )
        .unwrap()
    });
    let d = rel(&fast, &generic);
    assert!(d < 1e-4, "DDIM-20 sample differs by {d}");
}

#[test]
fn dlib_resnet_forward_and_backward() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let net = DlibResNet::new(VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    randomise(&vm, 0.05);
    let x = Var::rand(0f32, 1.0, (2, 3, 150, 150), &dev).unwrap();
    let probe = Tensor::randn(0f32, 1.0, (2, 128), &dev).unwrap();
    let (fast, generic) = both(|| {
        value_and_grads(
            net.forward(x.as_tensor()).unwrap(),
            &probe,
            std::slice::from_ref(&x),
        )
    });
    assert_same(&fast, &generic, 1e-4, "dlib ResNet");
}
