//! Labelled face sets for face-recognition training: a folder with one sub-folder per identity
//! (what `cemiface generate` writes, and torchvision's ImageFolder layout) or an insightface
//! `.rec` (labels in the record headers). Labels are remapped to 0..classes in sorted order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::data::image_io::{self, ImageLimits};
use crate::data::recordio::RecordReader;
use crate::{Error, Result};

/// Random access to labelled images.
pub trait LabelledSet: Send {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn classes(&self) -> usize;
    fn label(&self, i: usize) -> u32;
    fn image(&mut self, i: usize) -> Result<RgbImage>;
    fn describe(&self) -> String;
}

/// `root/<identity>/<image>`.
pub struct FolderSet {
    root: PathBuf,
    items: Vec<(PathBuf, u32)>,
    classes: usize,
}

impl FolderSet {
    pub fn open(root: &Path) -> Result<Self> {
        // A `cemiface generate` output keeps its identities under images/.
        let base = if root.join("images").is_dir() && root.join("generate.json").exists() {
            root.join("images")
        } else {
            root.to_path_buf()
        };
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
            .map_err(|e| Error::io(&base, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        let mut items = Vec::new();
        let mut classes = 0;
        for d in &dirs {
            let mut files: Vec<PathBuf> = std::fs::read_dir(d)
                .map_err(|e| Error::io(d, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| image_io::is_image_path(p))
                .collect();
            if files.is_empty() {
                continue;
            }
            files.sort();
            items.extend(files.into_iter().map(|f| (f, classes as u32)));
            classes += 1;
        }
        if items.is_empty() {
            return Err(Error::Config(format!(
                "{}: no identity sub-folders with images (expected <folder>/<identity>/<image>)",
                base.display()
            )));
        }
        Ok(Self {
            root: base,
            items,
            classes,
        })
    }
}

impl LabelledSet for FolderSet {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn label(&self, i: usize) -> u32 {
        self.items[i].1
    }
    fn image(&mut self, i: usize) -> Result<RgbImage> {
        image_io::read(&self.items[i].0, ImageLimits::default())
    }
    fn describe(&self) -> String {
        format!(
            "{} images of {} identities in {}",
            self.items.len(),
            self.classes,
            self.root.display()
        )
    }
}

/// An insightface RecordIO set.
pub struct RecordSet {
    reader: RecordReader,
    path: PathBuf,
    items: Vec<(u64, u32)>,
    classes: usize,
}

impl RecordSet {
    pub fn open(rec: &Path) -> Result<Self> {
        let mut reader = RecordReader::open(rec)?;
        let keys = reader.image_keys()?;
        let mut raw = Vec::with_capacity(keys.len());
        for k in keys {
            let r = reader.read(k)?;
            if r.label < 0.0 || r.label.fract() != 0.0 {
                return Err(Error::Format {
                    path: rec.to_path_buf(),
                    message: format!("record {k}: label {} is not an identity index", r.label),
                });
            }
            raw.push((k, r.label as u64));
        }
        let ids: BTreeMap<u64, u32> = raw
            .iter()
            .map(|r| r.1)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, l)| (l, i as u32))
            .collect();
        if raw.is_empty() {
            return Err(Error::Config(format!("{}: no image records", rec.display())));
        }
        Ok(Self {
            reader,
            path: rec.to_path_buf(),
            items: raw.into_iter().map(|(k, l)| (k, ids[&l])).collect(),
            classes: ids.len(),
        })
    }
}

impl LabelledSet for RecordSet {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn label(&self, i: usize) -> u32 {
        self.items[i].1
    }
    fn image(&mut self, i: usize) -> Result<RgbImage> {
        let key = self.items[i].0;
        let rec = self.reader.read(key)?;
        image_io::decode(
            &rec.image,
            &format!("{} record {key}", self.path.display()),
            ImageLimits::default(),
        )
    }
    fn describe(&self) -> String {
        format!(
            "{} images of {} identities in {}",
            self.items.len(),
            self.classes,
            self.path.display()
        )
    }
}

/// Opens a folder or a `.rec`.
pub fn open(path: &Path) -> Result<Box<dyn LabelledSet>> {
    if path.extension().is_some_and(|e| e == "rec") {
        Ok(Box::new(RecordSet::open(path)?))
    } else {
        Ok(Box::new(FolderSet::open(path)?))
    }
}
