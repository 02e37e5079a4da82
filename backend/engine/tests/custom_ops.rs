//! The engine's custom CPU ops against Candle's reference ops: same forward values, same gradients.

use candle_core::{Device, Tensor, Var};
use cemiface_engine::conv::conv2d;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn scale(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-6)
}

#[test]
fn gemm_conv_matches_candle_forward_and_backward() {
    let dev = Device::Cpu;
    // (batch, cin, h, w, cout, k, stride, pad): 3×3 same, strided, 1×1, 1×1 strided, odd sizes, valid.
    let cases = [
        (2, 5, 9, 9, 7, 3, 1, 1),
        (3, 4, 10, 10, 6, 3, 2, 1),
        (1, 8, 6, 6, 3, 1, 1, 0),
        (4, 3, 7, 7, 5, 1, 2, 0),
        (1, 3, 11, 8, 4, 3, 1, 1),
        (2, 2, 9, 9, 3, 4, 2, 0),
        (5, 16, 8, 8, 16, 3, 1, 1),
    ];
    for (b, cin, h, w, cout, k, s, p) in cases {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (cout, cin, k, k), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (b, cout, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1), &dev).unwrap();
        let ours = conv2d(x.as_tensor(), wt.as_tensor(), s, p).unwrap();
        let reference = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let d = max_diff(&ours, &reference) / scale(&reference);
        assert!(d < 1e-5, "forward {:?}: {d}", (b, cin, h, w, cout, k, s, p));
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &wt)] {
            let (a, r) = (g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
            let d = max_diff(a, r) / scale(r);
            assert!(d < 1e-5, "{name} gradient {:?}: {d}", (b, cin, h, w, cout, k, s, p));
        }
    }
}
