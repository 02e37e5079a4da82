//! Sample grids: what a training run's checkpoints draw for fixed held-out identities, and a
//! contact sheet of a generated data set. Both are PNGs an admin opens from the job page.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Device, Tensor};
use cemiface_engine::data::image_io::{self, ImageLimits};
use cemiface_engine::data::sources::{image_tensor, tensor_image};
use cemiface_engine::diffusion::generator::Generator;
use cemiface_engine::identity::encoder::IdentityEncoder;
use cemiface_engine::synth::generation::{encode, write_atomic, ImageFormat, ManifestEntry};
use cemiface_engine::synth::inquiry::{default_threshold, select, Inquiry, InquirySource};
use image::{imageops, RgbImage};

/// The similarity targets of a grid's columns (after the inquiry); the job page labels them.
pub const GRID_M: [f32; 3] = cemiface_app::admin_protocol::SAMPLE_GRID_M;
/// The seed of the grid's identities and noise: the same faces at every checkpoint.
const GRID_SEED: u64 = 0x6_71D0;

/// Four held-out DCGAN identities, sampled at [`GRID_M`] after each checkpoint.
pub struct SampleGrid {
    inquiries: Vec<Inquiry>,
    assets_dir: PathBuf,
    device: Device,
}

impl SampleGrid {
    pub fn new(
        encoder: &dyn IdentityEncoder,
        assets_dir: &Path,
        size: usize,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let source = InquirySource::Dcgan {
            weights: assets_dir.join("gan-face-generate/weights.tar"),
            faces: Some(assets_dir.to_path_buf()),
        };
        let (inquiries, _) = select(
            &source,
            4,
            default_threshold(encoder),
            encoder,
            size,
            GRID_SEED,
            device,
        )
        .context("choosing the sample grid's identities")?;
        Ok(Self {
            inquiries,
            assets_dir: assets_dir.to_path_buf(),
            device: device.clone(),
        })
    }

    /// Samples the grid with the EMA weights of `checkpoint` into
    /// `run_dir/samples/step_NNNNNNN.png` (rows: identities; columns: inquiry, then each m).
    pub fn render(&self, checkpoint: &Path, run_dir: &Path, step: u64) -> anyhow::Result<PathBuf> {
        let gen = Generator::load(checkpoint, false, &self.assets_dir, &self.device)?;
        let s = gen.image_size() as u32;
        let cols = GRID_M.len() as u32 + 1;
        let mut sheet = RgbImage::new(s * cols, s * self.inquiries.len() as u32);
        for (r, q) in self.inquiries.iter().enumerate() {
            // C_id under the checkpoint's own (centred) E_id.
            let c_id = match &q.image {
                Some(face) => gen.inquiry(
                    &image_tensor(face, s as usize, &self.device)?,
                    q.latent_tensor(&self.device)?.as_ref(),
                )?,
                None => Tensor::new(q.embedding.as_slice(), &self.device)?.unsqueeze(0)?,
            };
            let seeds = vec![GRID_SEED + r as u64; GRID_M.len()];
            let x = gen.sample_final(&c_id, &GRID_M, &seeds, 20, 1.0, |_| ControlFlow::Continue(()))?;
            if let Some(face) = &q.image {
                imageops::replace(&mut sheet, face, 0, (r as u32 * s) as i64);
            }
            for c in 0..GRID_M.len() {
                let img = tensor_image(&x.get(c)?)?;
                imageops::replace(
                    &mut sheet,
                    &img,
                    ((c as u32 + 1) * s) as i64,
                    (r as u32 * s) as i64,
                );
            }
        }
        let path = run_dir.join("samples").join(format!("step_{step:07}.png"));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        write_atomic(&path, &encode(&sheet, ImageFormat::Png)?)?;
        Ok(path)
    }
}

/// A contact sheet of a generated data set: up to `rows` identities (one per row, in identity
/// order), the first `cols` images of each. Written to `root/sample_grid.png`.
pub fn dataset_grid(
    root: &Path,
    entries: &[ManifestEntry],
    rows: usize,
    cols: usize,
) -> anyhow::Result<PathBuf> {
    let mut by_id: std::collections::BTreeMap<usize, Vec<&ManifestEntry>> = Default::default();
    for e in entries.iter().filter(|e| e.m.is_some()) {
        by_id.entry(e.identity).or_default().push(e);
    }
    let picked: Vec<Vec<&ManifestEntry>> = by_id
        .into_values()
        .take(rows)
        .map(|v| v.into_iter().take(cols).collect())
        .collect();
    let first = picked
        .first()
        .and_then(|v| v.first())
        .context("the data set has no generated images")?;
    let side = image_io::read(&root.join(&first.file), ImageLimits::default())?.width();
    let width = picked.iter().map(Vec::len).max().unwrap_or(1) as u32 * side;
    let mut sheet = RgbImage::new(width, picked.len() as u32 * side);
    for (r, row) in picked.iter().enumerate() {
        for (c, e) in row.iter().enumerate() {
            let img = image_io::read(&root.join(&e.file), ImageLimits::default())?;
            imageops::replace(
                &mut sheet,
                &img,
                (c as u32 * side) as i64,
                (r as u32 * side) as i64,
            );
        }
    }
    let path = root.join("sample_grid.png");
    write_atomic(&path, &encode(&sheet, ImageFormat::Png)?)?;
    Ok(path)
}
