//! The denoiser: guided-diffusion's ADM `UNetModel` as DCFace adapts it to 112×112, conditioned the
//! CemiFace way. Parameter names mirror guided-diffusion's state dict (`time_embed.{0,2}`,
//! `input_blocks.N.M.*`, `middle_block.{0,1,2}.*`, `output_blocks.N.M.*`, `out.{0,2}`), so ILVR/DCFace
//! UNet checkpoints load as they are; the condition path lives under `cond.*` (see `condition.rs`).

pub mod attention;
pub mod init;
pub mod res_block;

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::nn::conv::Conv2d;
use crate::nn::group_norm::GroupNorm;
use serde::{Deserialize, Serialize};

use crate::diffusion::condition::{Condition, ConditionConfig};
use crate::diffusion::unet::attention::AttentionBlock;
use crate::diffusion::unet::res_block::{conv3, norm32, zero_conv, ResBlock, Resample};
use crate::{Error, Result};

/// Architecture of the UNet and its condition path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub image_size: usize,
    pub in_channels: usize,
    /// 3 for ε only; 6 for ε + the (unused) learned variance, as DCFace's checkpoints have.
    pub out_channels: usize,
    pub model_channels: usize,
    pub channel_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Downsampling factors (ds) that get attention, e.g. [16] → 7×7 at 112.
    pub attention_resolutions: Vec<usize>,
    pub num_head_channels: usize,
    /// Levels whose downsample (and the matching upsample) is replaced by a plain ResBlock
    /// (DCFace's `skip_downsample_level=4`, which makes 112 work with the 6-level model).
    #[serde(default)]
    pub skip_downsample_levels: Vec<usize>,
    pub condition: ConditionConfig,
}

impl UNetConfig {
    /// The paper's model: base 128, mult 1,1,2,2,4,4, one res block per level, 8 heads of 64 at 7×7.
    pub fn paper_112() -> Self {
        Self {
            image_size: 112,
            in_channels: 3,
            out_channels: 6,
            model_channels: 128,
            channel_mult: vec![1, 1, 2, 2, 4, 4],
            num_res_blocks: 1,
            attention_resolutions: vec![16],
            num_head_channels: 64,
            skip_downsample_levels: vec![4],
            condition: ConditionConfig::default(),
        }
    }

    /// The small CPU preset: 64×64 (the DCGAN's size), base 64, mult 1,2,2,4, attention at 8×8,
    /// conditioned on dlib's 128-d embedding.
    pub fn demo_64() -> Self {
        Self {
            image_size: 64,
            in_channels: 3,
            out_channels: 3,
            model_channels: 64,
            channel_mult: vec![1, 2, 2, 4],
            num_res_blocks: 1,
            attention_resolutions: vec![8],
            num_head_channels: 64,
            skip_downsample_levels: vec![],
            condition: ConditionConfig {
                id_dim: 128,
                sim_dim: 256,
                tokens: 1,
            },
        }
    }

    /// Multiply-accumulate count ×2 (FLOPs) of one forward pass for one image, from the
    /// architecture (convolutions, linear layers and attention products; norms and activations left out).
    pub fn flops_per_image(&self) -> u64 {
        let mc = self.model_channels as u64;
        let emb = 4 * mc;
        let conv = |cin: u64, cout: u64, k: u64, hw: u64| 2 * k * k * cin * cout * hw;
        let res = |cin: u64, cout: u64, hw_in: u64, hw_out: u64| {
            conv(cin, cout, 3, hw_out)
                + conv(cout, cout, 3, hw_out)
                + 2 * emb * 2 * cout
                + if cin != cout {
                    conv(cin, cout, 1, hw_out.max(hw_in))
                } else {
                    0
                }
        };
        let tokens = self.condition.tokens as u64;
        let attn = |c: u64, hw: u64| 2 * hw * c * 3 * c + 2 * hw * c * c + 2 * 2 * hw * (hw + tokens) * c;
        let mut f = 2 * mc * emb
            + 2 * emb * emb
            + conv(
                self.in_channels as u64,
                mc,
                3,
                (self.image_size * self.image_size) as u64,
            );
        let mut side = self.image_size as u64;
        let (mut ch, mut ds) = (mc, 1usize);
        let mut chans = vec![mc];
        let mut sides = vec![side];
        let levels = self.channel_mult.len();
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            let out = mult as u64 * mc;
            for _ in 0..self.num_res_blocks {
                f += res(ch, out, side * side, side * side);
                ch = out;
                if self.attention_resolutions.contains(&ds) {
                    f += attn(ch, side * side);
                }
                chans.push(ch);
                sides.push(side);
            }
            if level + 1 < levels {
                let new_side = if self.skip_downsample_levels.contains(&level) {
                    side
                } else {
                    side / 2
                };
                f += res(ch, ch, side * side, new_side * new_side);
                side = new_side;
                chans.push(ch);
                sides.push(side);
                ds *= 2;
            }
        }
        f += 2 * res(ch, ch, side * side, side * side) + attn(ch, side * side);
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            let out = mult as u64 * mc;
            for i in 0..=self.num_res_blocks {
                let skip = chans.pop().unwrap_or(mc);
                sides.pop();
                f += res(ch + skip, out, side * side, side * side);
                ch = out;
                if self.attention_resolutions.contains(&ds) {
                    f += attn(ch, side * side);
                }
                if level > 0 && i == self.num_res_blocks {
                    let new_side = if self.skip_downsample_levels.contains(&(level - 1)) {
                        side
                    } else {
                        side * 2
                    };
                    f += res(ch, ch, side * side, new_side * new_side);
                    side = new_side;
                    ds /= 2;
                }
            }
        }
        f + conv(ch, self.out_channels as u64, 3, side * side)
    }

    /// Channels at the attention resolution (every attention block has the same width).
    pub fn attention_channels(&self) -> Result<usize> {
        let mut ds = 1;
        let mut widths = Vec::new();
        for (level, mult) in self.channel_mult.iter().enumerate() {
            if self.attention_resolutions.contains(&ds) {
                widths.push(mult * self.model_channels);
            }
            if level + 1 < self.channel_mult.len() {
                ds *= 2;
            }
        }
        match widths.as_slice() {
            [w, rest @ ..] if rest.iter().all(|r| r == w) => Ok(*w),
            [] => Err(Error::Config(
                "no attention resolution matches a level (condition tokens need one)".into(),
            )),
            _ => Err(Error::Config(format!(
                "attention levels have different widths {widths:?}"
            ))),
        }
    }

    fn validate(&self) -> Result<()> {
        let downs = self.channel_mult.len() - 1 - self.skip_downsample_levels.len();
        if !self.image_size.is_multiple_of(1 << downs) {
            return Err(Error::Config(format!(
                "image size {} is not divisible by 2^{downs}",
                self.image_size
            )));
        }
        if !self.model_channels.is_multiple_of(32) {
            return Err(Error::Config(
                "model_channels must be a multiple of 32 (GroupNorm(32))".into(),
            ));
        }
        self.attention_channels().map(|_| ())
    }
}

#[derive(Debug, Clone)]
enum Layer {
    Conv(Conv2d),
    Res(ResBlock),
    Attn(AttentionBlock),
}

impl Layer {
    fn forward(&self, x: &Tensor, emb: &Tensor, kv: &Tensor) -> Result<Tensor> {
        match self {
            Self::Conv(c) => Ok(c.forward(x)?),
            Self::Res(r) => r.forward(x, emb),
            Self::Attn(a) => a.forward(x, Some(kv)),
        }
    }
}

fn run(layers: &[Layer], x: &Tensor, emb: &Tensor, kv: &Tensor) -> Result<Tensor> {
    layers.iter().try_fold(x.clone(), |h, l| l.forward(&h, emb, kv))
}

/// The conditional UNet.
#[derive(Debug, Clone)]
pub struct UNet {
    cfg: UNetConfig,
    time_embed: (Linear, Linear),
    input_blocks: Vec<Vec<Layer>>,
    middle: Vec<Layer>,
    output_blocks: Vec<Vec<Layer>>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    condition: Condition,
}

impl UNet {
    pub fn new(cfg: UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let mc = cfg.model_channels;
        let emb_dim = 4 * mc;
        let attn = |ch, vb| -> Result<Layer> {
            Ok(Layer::Attn(AttentionBlock::new(ch, cfg.num_head_channels, vb)?))
        };
        let res =
            |cin, cout, r, vb| -> Result<Layer> { Ok(Layer::Res(ResBlock::new(cin, cout, emb_dim, r, vb)?)) };

        let ib = vb.pp("input_blocks");
        let mut input_blocks = vec![vec![Layer::Conv(conv3(cfg.in_channels, mc, ib.pp(0).pp(0))?)]];
        let mut chans = vec![mc];
        let (mut ch, mut ds) = (mc, 1);
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let b = ib.pp(input_blocks.len());
                let mut layers = vec![res(ch, mult * mc, Resample::None, b.pp(0))?];
                ch = mult * mc;
                if cfg.attention_resolutions.contains(&ds) {
                    layers.push(attn(ch, b.pp(1))?);
                }
                input_blocks.push(layers);
                chans.push(ch);
            }
            if level + 1 < levels {
                let r = if cfg.skip_downsample_levels.contains(&level) {
                    Resample::None
                } else {
                    Resample::Down
                };
                input_blocks.push(vec![res(ch, ch, r, ib.pp(input_blocks.len()).pp(0))?]);
                chans.push(ch);
                ds *= 2;
            }
        }
        let mb = vb.pp("middle_block");
        let middle = vec![
            res(ch, ch, Resample::None, mb.pp(0))?,
            attn(ch, mb.pp(1))?,
            res(ch, ch, Resample::None, mb.pp(2))?,
        ];

        let ob = vb.pp("output_blocks");
        let mut output_blocks = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let b = ob.pp(output_blocks.len());
                let skip_ch = chans.pop().expect("one skip per input block");
                let mut layers = vec![res(ch + skip_ch, mult * mc, Resample::None, b.pp(0))?];
                ch = mult * mc;
                if cfg.attention_resolutions.contains(&ds) {
                    layers.push(attn(ch, b.pp(1))?);
                }
                if level > 0 && i == cfg.num_res_blocks {
                    let r = if cfg.skip_downsample_levels.contains(&(level - 1)) {
                        Resample::None
                    } else {
                        Resample::Up
                    };
                    layers.push(res(ch, ch, r, b.pp(layers.len()))?);
                    ds /= 2;
                }
                output_blocks.push(layers);
            }
        }
        let te = vb.pp("time_embed");
        Ok(Self {
            time_embed: (
                linear(mc, emb_dim, te.pp(0))?,
                linear(emb_dim, emb_dim, te.pp(2))?,
            ),
            out_norm: norm32(ch, vb.pp("out").pp(0))?,
            out_conv: zero_conv(ch, cfg.out_channels, 3, vb.pp("out").pp(2))?,
            condition: Condition::new(&cfg.condition, cfg.attention_channels()?, vb.pp("cond"))?,
            input_blocks,
            middle,
            output_blocks,
            cfg,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Predicted ε (the first 3 output channels).
    ///
    /// # Shapes
    /// `x_t`: (B, 3, S, S); `t`: (B,) timesteps; `id_embedding`: (B, id_dim), L2-normalised E_id(x);
    /// `m`: (B,) similarity targets → (B, 3, S, S).
    pub fn forward(&self, x_t: &Tensor, t: &Tensor, id_embedding: &Tensor, m: &Tensor) -> Result<Tensor> {
        let emb = timestep_embedding(t, self.cfg.model_channels)?;
        let emb = self
            .time_embed
            .1
            .forward(&self.time_embed.0.forward(&emb)?.silu()?)?;
        let kv = self.condition.forward(id_embedding, m)?;
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x_t.clone();
        for block in &self.input_blocks {
            h = run(block, &h, &emb, &kv)?;
            skips.push(h.clone());
        }
        h = run(&self.middle, &h, &emb, &kv)?;
        for block in &self.output_blocks {
            let skip = skips.pop().expect("one skip per output block");
            h = run(block, &Tensor::cat(&[h, skip], 1)?, &emb, &kv)?;
        }
        let out = self
            .out_conv
            .forward(&self.out_norm.forward_fused(&h, None, true)?)?;
        Ok(out.narrow(1, 0, self.cfg.in_channels)?)
    }
}

/// Sinusoidal embedding of (B,) timesteps, [cos, sin] halves, max period 10000 (guided-diffusion).
pub fn timestep_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t
        .to_dtype(candle_core::DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    Ok(Tensor::cat(&[args.cos()?, args.sin()?], 1)?)
}
