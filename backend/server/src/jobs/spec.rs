//! What a job is: the shared protocol's spec (`cemiface_app::admin_protocol::spec`: kinds,
//! parameters, validation), with this server's config presets, which a training job must name.

pub use cemiface_app::admin_protocol::spec::*;
pub use cemiface_app::admin_protocol::{JobState, Presets};

/// The presets this server's training jobs may name (compiled into the binary).
pub fn presets() -> Presets {
    fn names(p: &[(&'static str, &'static str)]) -> Vec<String> {
        p.iter().map(|(n, _)| (*n).to_owned()).collect()
    }
    Presets {
        train_diffusion: names(&crate::commands::diffusion::PRESETS),
        train_fr: names(&crate::commands::train_fr::PRESETS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The browser's launch form and the server's spec agree: every kind's form, at its defaults,
    /// is a spec the server parses (it refuses unknown fields), the runnable kinds validate, and
    /// a preset field's default is one of the server's presets.
    #[test]
    fn the_launch_form_writes_specs_the_server_reads() {
        use cemiface_app::components::launch_form::{defaults, fields, to_spec, FieldType, KINDS};
        for kind in KINDS {
            let v = to_spec(kind, &defaults(kind)).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
            let spec =
                serde_json::from_value::<JobSpec>(v.clone()).unwrap_or_else(|e| panic!("{kind}: {e} in {v}"));
            assert_eq!(spec.kind().as_str(), kind);
            if matches!(kind, "generate" | "train-diffusion") {
                assert_eq!(spec.validate(true, &presets()), Ok(()), "{kind}");
            }
            for f in fields(kind).iter().filter(|f| f.ty == FieldType::Preset) {
                let presets = match kind {
                    "train-diffusion" => &crate::commands::diffusion::PRESETS[..],
                    _ => &crate::commands::train_fr::PRESETS[..],
                };
                assert!(
                    presets.iter().any(|(n, _)| *n == f.default),
                    "{kind}: preset {}",
                    f.default
                );
            }
        }
    }
}
