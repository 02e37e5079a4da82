//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what its format requires (truncated, malformed).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// A configuration value is out of range or inconsistent.
    #[error("config: {0}")]
    Config(String),
    /// The pinned asset list (`assets.lock`) is malformed.
    #[error("assets.lock line {line}: {message}")]
    AssetsLock { line: usize, message: String },
    /// The requested compute device is not usable.
    #[error("device: {0}")]
    Device(String),
    /// The detector found no face in the photo.
    #[error("{image}: no face found")]
    NoFace { image: String },
    /// The largest face is too small to align reliably.
    #[error("{image}: the face is too small ({side} px; at least {min} px needed)")]
    FaceTooSmall { image: String, side: u32, min: u32 },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, Error>;
