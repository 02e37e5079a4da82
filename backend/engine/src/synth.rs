//! The synthetic data set (CemiFace Algorithm 2): inquiry identities, generation in resumable shards
//! with one seed per image, and the summary of what was generated (achieved similarity per m, the
//! merged manifest, the RecordIO export).

pub mod generation;
pub mod inquiry;
pub mod report;
