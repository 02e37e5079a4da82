//! The engine's custom CPU ops against Candle's reference ops: same forward values, same gradients.

use candle_core::{Device, Tensor, Var};
use cemiface_engine::nn::conv::conv2d;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn magnitude(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1e-6)
}

/// Relative tolerance of the convolution against Candle's: the Winograd layers (3×3, stride 1,
/// padding 1, ≥ 16 channels) round to ≈ 1e-5 of the output's scale, im2col ones to ≈ 3e-7; a wrong
/// transform or index is O(1).
const CONV_TOL: f32 = 3e-5;

#[test]
fn gemm_conv_matches_candle_forward_and_backward() {
    let dev = Device::Cpu;
    // (batch, cin, h, w, cout, k, stride, pad): 3×3 same, strided, 1×1, 1×1 strided, odd sizes, valid,
    // wide strided kernels.
    let cases = [
        (2, 5, 9, 9, 7, 3, 1, 1),
        (3, 4, 10, 10, 6, 3, 2, 1),
        (1, 8, 6, 6, 3, 1, 1, 0),
        (4, 3, 7, 7, 5, 1, 2, 0),
        (1, 3, 11, 8, 4, 3, 1, 1),
        (2, 2, 9, 9, 3, 4, 2, 0),
        (5, 16, 8, 8, 16, 3, 1, 1),
        // Winograd F(4×4, 3×3) layers: whole and partial tiles, non-square, channels ≠ 8·n.
        (2, 16, 16, 16, 24, 3, 1, 1),
        (3, 17, 9, 14, 16, 3, 1, 1),
        (1, 32, 8, 8, 40, 3, 1, 1),
        // dlib's input layer (7×7, stride 2, no padding) and a strided kernel wider than its pad
        // (sizes where Candle's own backward, the reference, fits the input exactly).
        (2, 3, 17, 15, 4, 7, 2, 0),
        (1, 2, 13, 16, 3, 5, 3, 2),
        // Batches of small outputs run stacked, one GEMM for the batch: every direction at 4×4, the
        // weight gradient only for a 1×1 layer (and the strided 5×5 outputs above); larger ones
        // image by image (with a batch, this one: 18×18 outputs, 3 input channels).
        (6, 12, 4, 4, 10, 3, 1, 1),
        (3, 7, 1, 1, 5, 1, 1, 0),
        (2, 3, 18, 18, 4, 3, 1, 1),
    ];
    for (b, cin, h, w, cout, k, s, p) in cases {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (cout, cin, k, k), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(
            0f32,
            1.0,
            (b, cout, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1),
            &dev,
        )
        .unwrap();
        let ours = conv2d(x.as_tensor(), wt.as_tensor(), s, p).unwrap();
        let reference = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let d = max_diff(&ours, &reference) / magnitude(&reference);
        assert!(d < CONV_TOL, "forward {:?}: {d}", (b, cin, h, w, cout, k, s, p));
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("input", &x), ("weight", &wt)] {
            let (a, r) = (g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
            let d = max_diff(a, r) / magnitude(r);
            assert!(
                d < CONV_TOL,
                "{name} gradient {:?}: {d}",
                (b, cin, h, w, cout, k, s, p)
            );
        }
    }
}

/// A frozen weight (a plain tensor: loaded weights, dlib inside SimMat) gets no gradient, and the
/// input's gradient is still Candle's, on both the batch-parallel and the per-image GEMM path.
#[test]
fn gemm_conv_with_a_frozen_weight_skips_its_gradient_and_keeps_the_input_s() {
    let dev = Device::Cpu;
    for (b, cin, h, cout, k, s, p) in [
        (1, 4, 9, 6, 3, 1, 1),
        (4, 5, 10, 3, 3, 2, 1),
        (3, 8, 6, 5, 1, 1, 0),
        (2, 24, 11, 16, 3, 1, 1),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, cin, h, h), &dev).unwrap()).unwrap();
        let wt = Tensor::randn(0f32, 0.5, (cout, cin, k, k), &dev).unwrap();
        let oh = (h + 2 * p - k) / s + 1;
        let probe = Tensor::randn(0f32, 1.0, (b, cout, oh, oh), &dev).unwrap();
        let g_ours = (conv2d(x.as_tensor(), &wt, s, p).unwrap() * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_ref = (x.as_tensor().conv2d(&wt, p, s, 1, 1).unwrap() * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g_ours.get(&wt).is_none(), "no gradient for a frozen weight");
        let (a, r) = (g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap());
        let d = max_diff(a, r) / magnitude(r);
        assert!(
            d < CONV_TOL,
            "input gradient {:?}: {d}",
            (b, cin, h, cout, k, s, p)
        );
    }
}

/// The transposed convolution against Candle's: values, input and weight gradients (a variable
/// weight), and no weight gradient for a frozen one; the DCGAN's shapes (1 → 4 with stride 1, then
/// doubling with stride 2, padding 1) and odd ones.
#[test]
fn transposed_conv_matches_candle_forward_and_backward() {
    use cemiface_engine::nn::conv_transpose::conv_transpose2d;
    let dev = Device::Cpu;
    // (batch, cin, h, cout, k, stride, pad)
    for (b, cin, h, cout, k, s, p) in [
        (3, 10, 1, 8, 4, 1, 0),
        (2, 8, 4, 6, 4, 2, 1),
        (1, 5, 5, 3, 3, 2, 1),
        (4, 3, 6, 2, 3, 1, 1),
        (8, 16, 4, 8, 4, 2, 1),
        (8, 12, 1, 10, 4, 1, 0),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, cin, h, h), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.5, (cin, cout, k, k), &dev).unwrap()).unwrap();
        let ours = conv_transpose2d(x.as_tensor(), w.as_tensor(), s, p).unwrap();
        let reference = x.as_tensor().conv_transpose2d(w.as_tensor(), p, 0, s, 1).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let case = (b, cin, h, cout, k, s, p);
        assert!(
            max_diff(&ours, &reference) / magnitude(&reference) < 1e-5,
            "forward {case:?}"
        );
        let probe = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
        let g_ours = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (&reference * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("input", &x), ("weight", &w)] {
            let (a, r) = (g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
            assert!(max_diff(a, r) / magnitude(r) < 1e-5, "{name} gradient {case:?}");
        }
        let frozen = w.as_tensor().detach();
        let g = (conv_transpose2d(x.as_tensor(), &frozen, s, p).unwrap() * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&frozen).is_none() && g.get(&x).is_some(), "{case:?}");
    }
}

/// The max-pool kernel against the composed ops (forced generic path): values and gradients, on
/// odd and even sizes, 3×3 (dlib's stem) and 2×2 windows.
#[test]
fn max_pool_kernel_matches_the_composed_ops_forward_and_backward() {
    use cemiface_engine::nn::kernels::with_generic;
    use cemiface_engine::nn::max_pool::max_pool_s2;
    let dev = Device::Cpu;
    for (b, c, h, w, k) in [
        (2, 3, 11, 8, 3),
        (8, 4, 73, 73, 3),
        (1, 2, 6, 7, 2),
        (3, 1, 3, 3, 3),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (b, c, (h - k) / 2 + 1, (w - k) / 2 + 1), &dev).unwrap();
        let run = || {
            let y = max_pool_s2(x.as_tensor(), k).unwrap();
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(&x).unwrap().clone())
        };
        let (y, dx) = run();
        let (y_ref, dx_ref) = with_generic(run);
        assert_eq!(y.dims(), y_ref.dims());
        assert_eq!(max_diff(&y, &y_ref), 0.0, "forward {:?}", (b, c, h, w, k));
        assert!(max_diff(&dx, &dx_ref) < 1e-6, "gradient {:?}", (b, c, h, w, k));
    }
    let err = max_pool_s2(
        &Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap(),
        3,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn fused_group_norm_matches_the_composed_ops_forward_and_backward() {
    use candle_nn::{Module, VarBuilder, VarMap};
    use cemiface_engine::nn::group_norm::GroupNorm;
    let dev = Device::Cpu;
    for (b, c, h, groups, adagn, silu) in [
        (2, 8, 5, 4, true, true),
        (3, 6, 4, 3, false, true),
        (1, 4, 7, 2, false, false),
        (2, 64, 8, 32, true, true),
    ] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev);
        let ours = GroupNorm::new(groups, c, 1e-5, vb.pp("n")).unwrap();
        let reference = candle_nn::group_norm(groups, c, 1e-5, vb.pp("n")).unwrap();
        // Non-trivial γ and β.
        for v in vm.all_vars() {
            v.set(&Tensor::randn(1f32, 0.3, v.shape(), &dev).unwrap())
                .unwrap();
        }
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (b, c, h, h), &dev).unwrap() + 0.7).unwrap())
            .unwrap();
        let scale = Var::from_tensor(&Tensor::randn(0f32, 0.5, (b, c), &dev).unwrap()).unwrap();
        let shift = Var::from_tensor(&Tensor::randn(0f32, 0.5, (b, c), &dev).unwrap()).unwrap();
        let ss = adagn.then_some((scale.as_tensor(), shift.as_tensor()));
        let y = ours.forward_fused(x.as_tensor(), ss, silu).unwrap();
        let mut r = reference.forward(x.as_tensor()).unwrap();
        if adagn {
            let col = |t: &Tensor| t.unsqueeze(2).unwrap().unsqueeze(3).unwrap();
            r = r
                .broadcast_mul(&col(&(scale.as_tensor() + 1.0).unwrap()))
                .unwrap()
                .broadcast_add(&col(shift.as_tensor()))
                .unwrap();
        }
        if silu {
            r = r.silu().unwrap();
        }
        let d = max_diff(&y, &r) / magnitude(&r);
        assert!(d < 1e-5, "forward {:?}: {d}", (b, c, h, groups));
        let probe = Tensor::randn(0f32, 1.0, y.shape(), &dev).unwrap();
        let g1 = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (r * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let mut vars: Vec<(String, Var)> = vec![("x".into(), x.clone())];
        vars.extend(
            vm.data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        if adagn {
            vars.push(("scale".into(), scale.clone()));
            vars.push(("shift".into(), shift.clone()));
        }
        for (name, v) in vars {
            let (a, r) = (g1.get(&v).unwrap(), g2.get(&v).unwrap());
            let d = max_diff(a, r) / magnitude(r);
            assert!(d < 1e-4, "{name} gradient {:?}: {d}", (b, c, h, groups));
        }
    }
}

#[test]
fn conv_layer_with_bias_matches_candle_forward_and_backward() {
    use candle_nn::{Module, VarBuilder, VarMap};
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev);
    let cfg = candle_nn::Conv2dConfig {
        padding: 1,
        stride: 2,
        ..Default::default()
    };
    let reference = candle_nn::conv2d(4, 6, 3, cfg, vb.pp("c")).unwrap();
    let ours = cemiface_engine::nn::conv::Conv2d::from(reference.clone());
    for v in vm.all_vars() {
        v.set(&Tensor::randn(0f32, 0.5, v.shape(), &dev).unwrap())
            .unwrap();
    }
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 9, 9), &dev).unwrap()).unwrap();
    let (y, r) = (
        ours.forward(x.as_tensor()).unwrap(),
        reference.forward(x.as_tensor()).unwrap(),
    );
    assert!(max_diff(&y, &r) / magnitude(&r) < 1e-5);
    let probe = Tensor::randn(0f32, 1.0, y.shape(), &dev).unwrap();
    let g1 = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (r * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let mut vars = vm.all_vars();
    vars.push(x);
    for v in vars {
        let (a, b) = (g1.get(&v).unwrap(), g2.get(&v).unwrap());
        assert!(max_diff(a, b) / magnitude(b) < 1e-5, "{:?}", v.shape());
    }
}

#[test]
fn in_place_adamw_and_ema_equal_the_composed_tensor_updates() {
    use cemiface_engine::optim::adamw::{AdamW, AdamWConfig};
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
    let run = |fused: bool| {
        let p = Var::from_tensor(&init.copy().unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("p".into(), p.clone())], cfg.clone()).unwrap();
        let mut steps = || {
            for k in 0..4 {
                let loss = (p.as_tensor().sqr().unwrap() * (k as f64 + 1.0))
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
        };
        if fused {
            steps();
        } else {
            cemiface_engine::nn::kernels::with_generic(steps);
        }
        p.as_tensor().clone()
    };
    let (a, b) = (run(true), run(false));
    assert!(max_diff(&a, &b) <= 1e-6 * magnitude(&b), "{}", max_diff(&a, &b));
    assert!(max_diff(&a, &init) > 1e-3, "the parameters moved");

    let shadow = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
    let p = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
    let composed = ((&shadow * 0.9).unwrap() + (&p * 0.1).unwrap()).unwrap();
    let s = shadow.copy().unwrap();
    cemiface_engine::optim::fused_update::ema(&s, &p, 0.9).unwrap();
    assert!(max_diff(&s, &composed) <= 1e-6);
}
