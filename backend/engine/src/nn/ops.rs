//! Small differentiable tensor helpers Candle lacks (its pooling has no backward when kernel ≠ stride).

use candle_core::{CpuStorage, Layout, Result, Tensor};

/// Elements `start, start + 2, …` (n of them) along `dim`, with a backward pass: takes 2n − 1
/// elements, pads one, folds them in pairs and keeps the first of each pair.
pub fn every_other(t: &Tensor, dim: usize, start: usize, n: usize) -> Result<Tensor> {
    let t = t.narrow(dim, start, 2 * n - 1)?.pad_with_zeros(dim, 0, 1)?;
    let mut shape = t.dims().to_vec();
    shape[dim] = n;
    shape.insert(dim + 1, 2);
    t.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

/// PyTorch `MaxPool2d(1, stride=2)`: every other row and column of an NCHW tensor.
pub fn subsample2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    every_other(&every_other(x, 2, 0, h.div_ceil(2))?, 3, 0, w.div_ceil(2))
}

/// 'VALID' max-pool of an NCHW tensor with a k×k window and stride 2, from Candle ops only: the
/// generic path of [`crate::nn::max_pool::max_pool_s2`] (every device).
pub fn max_pool_s2_composed(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = ((h - k) / 2 + 1, (w - k) / 2 + 1);
    let mut out: Option<Tensor> = None;
    for i in 0..k {
        let rows = every_other(x, 2, i, oh)?;
        for j in 0..k {
            let win = every_other(&rows, 3, j, ow)?;
            out = Some(match out {
                None => win,
                Some(m) => m.maximum(&win)?,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("max-pool window must be at least 1".into()))
}

/// The f32 elements of a contiguous CPU tensor (custom ops' inputs); `what` names it in errors.
pub fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{what}: a contiguous f32 CPU tensor is required"),
    }
}

/// [`cpu_f32`] for in-place ops.
/// Runs `f` on the f32 slices of CPU tensors (each made contiguous first; `what` names each in
/// errors): how a custom op's backward reads its arguments and output gradient.
pub fn with_cpu_f32<R>(
    op: &str,
    tensors: &[(&Tensor, &str)],
    f: impl FnOnce(&[&[f32]]) -> Result<R>,
) -> Result<R> {
    let owned = tensors
        .iter()
        .map(|(t, _)| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(tensors.len());
    for ((storage, layout), (_, what)) in guards.iter().zip(tensors) {
        let candle_core::Storage::Cpu(s) = &**storage else {
            candle_core::bail!("{op}: the custom op runs on the CPU only");
        };
        slices.push(cpu_f32(s, layout, what)?);
    }
    f(&slices)
}

pub fn cpu_f32_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{what}: a contiguous f32 CPU tensor is required"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn max_pool_matches_candles_forward_and_has_a_gradient() {
        let x = Var::rand(-1f32, 1f32, (2, 3, 11, 8), &Device::Cpu).unwrap();
        let ours = max_pool_s2_composed(x.as_tensor(), 3).unwrap();
        let reference = x.as_tensor().max_pool2d_with_stride(3, 2).unwrap();
        assert_eq!(ours.dims(), &[2, 3, 5, 3]);
        let diff = (ours.clone() - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let grads = ours.sum_all().unwrap().backward().unwrap();
        let g = grads
            .get(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(g, 90.0); // each of the 2·3·5·3 outputs sends 1 to its arg-max
    }

    #[test]
    fn subsample_keeps_even_rows_and_columns_like_torch_maxpool_1_2() {
        let x = Tensor::arange(0f32, 35., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 5, 7))
            .unwrap();
        let s = subsample2(&x).unwrap();
        assert_eq!(s.dims(), &[1, 1, 3, 4]);
        let v = s.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, vec![0., 2., 4., 6., 14., 16., 18., 20., 28., 30., 32., 34.]);
    }
}
