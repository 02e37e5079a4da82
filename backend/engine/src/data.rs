//! Faces in and out: unlabelled training sources for the generator (`sources`, incl. the DCGAN
//! stream of `dcgan`), labelled sets for face recognition (`labelled`), insightface's formats
//! (`recordio` `.rec`/`.idx`, `insightface_bin` verification `.bin`), pair lists, and safe image
//! decoding (`image_io`).

pub mod dcgan;
pub mod image_io;
pub mod insightface_bin;
pub mod labelled;
pub mod pair_list;
pub mod recordio;
pub mod sources;
