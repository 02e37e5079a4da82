//! The admin's launch form: the fields of each job kind with their defaults, turned into the JSON
//! job spec the server validates (and back, for "clone with changes").

use serde_json::{json, Map, Value};

/// How a field is typed in and sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldType {
    Int,
    /// An integer that may stay empty (the preset's value then).
    OptInt,
    Float,
    /// Comma-separated numbers.
    FloatList,
    /// Comma-separated text.
    TextList,
    Text,
    /// Text that may stay empty.
    OptText,
    Bool,
    Choice(&'static [&'static str]),
    /// A config preset of the server (`GET /api/admin/presets`, by job kind).
    Preset,
}

/// One field of a kind's form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub ty: FieldType,
    pub default: &'static str,
}

const fn f(name: &'static str, label: &'static str, ty: FieldType, default: &'static str) -> Field {
    Field {
        name,
        label,
        ty,
        default,
    }
}

/// Job kinds in the order the form offers them.
pub const KINDS: [&str; 4] = ["generate", "train-diffusion", "train-fr", "eval"];

use FieldType::*;

const GENERATE: &[Field] = &[
    f(
        "generator",
        "Generator (default, or job:<id> of a train-diffusion job)",
        Text,
        "default",
    ),
    f(
        "inquiries",
        "Inquiry identities",
        Choice(&["dcgan", "random"]),
        "dcgan",
    ),
    f("identities", "Identities", Int, "4"),
    f("images_per_identity", "Images per identity", Int, "4"),
    f(
        "m",
        "Similarity targets m (comma-separated, in [-1, 1])",
        FloatList,
        "0",
    ),
    f("steps", "DDIM steps", Int, "20"),
    f("eta", "η", Float, "1"),
    f("seed", "Seed", Int, "0"),
    f("format", "Image format", Choice(&["png", "jpeg"]), "png"),
    f("rec", "Also write train.rec / train.idx", Bool, "false"),
];

const TRAIN_DIFFUSION: &[Field] = &[
    f("config", "Preset", Preset, "latent-dcgan"),
    f("steps", "Steps (empty: the preset's)", OptInt, ""),
    f("batch_size", "Batch size (empty: the preset's)", OptInt, ""),
    f(
        "checkpoint_every",
        "Checkpoint every N steps (empty: the preset's)",
        OptInt,
        "",
    ),
    f("seed", "Seed (empty: the preset's)", OptInt, ""),
    f("sample_grid", "Sample grid at each checkpoint", Bool, "true"),
];

const TRAIN_FR: &[Field] = &[
    f("config", "Preset", Preset, "fr-tiny"),
    f(
        "data",
        "Data (job:<id> of a generate job, or a folder / .rec on the server)",
        Text,
        "",
    ),
    f("steps", "Steps (empty: the preset's epochs)", OptInt, ""),
    f("batch_size", "Batch size (empty: the preset's)", OptInt, ""),
];

const EVAL: &[Field] = &[
    f(
        "checkpoint",
        "Checkpoint (job:<id> of a train-fr job; empty: dlib)",
        OptText,
        "",
    ),
    f(
        "sets",
        "Sets (.bin files or pair lists on the server, comma-separated)",
        TextList,
        "",
    ),
];

/// The fields of a kind.
pub fn fields(kind: &str) -> &'static [Field] {
    match kind {
        "generate" => GENERATE,
        "train-diffusion" => TRAIN_DIFFUSION,
        "train-fr" => TRAIN_FR,
        "eval" => EVAL,
        _ => &[],
    }
}

/// The field values of a form, by name.
pub type Values = Vec<(String, String)>;

/// A kind's defaults.
pub fn defaults(kind: &str) -> Values {
    fields(kind)
        .iter()
        .map(|f| (f.name.to_owned(), f.default.to_owned()))
        .collect()
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// The job spec of a filled form; Err lists the fields that do not parse (the server checks
/// ranges).
pub fn to_spec(kind: &str, values: &Values) -> Result<Value, Vec<(String, String)>> {
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    let mut errors = Vec::new();
    for fld in fields(kind) {
        let raw = values
            .iter()
            .find(|(n, _)| n == fld.name)
            .map_or(fld.default, |(_, v)| v.as_str())
            .trim();
        let bad = |what: &str| (fld.name.to_owned(), format!("{what}: `{raw}`"));
        let v = match fld.ty {
            FieldType::Int => raw
                .parse::<u64>()
                .map(|n| json!(n))
                .map_err(|_| bad("not a whole number")),
            FieldType::OptInt if raw.is_empty() => continue,
            FieldType::OptInt => raw
                .parse::<u64>()
                .map(|n| json!(n))
                .map_err(|_| bad("not a whole number")),
            FieldType::Float => raw
                .parse::<f64>()
                .map(|x| json!(x))
                .map_err(|_| bad("not a number")),
            FieldType::FloatList => list(raw)
                .map(|p| p.parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
                .map(|v| json!(v))
                .map_err(|_| bad("not a list of numbers")),
            FieldType::TextList => Ok(json!(list(raw).collect::<Vec<_>>())),
            FieldType::OptText if raw.is_empty() => continue,
            FieldType::Text | FieldType::OptText | FieldType::Choice(_) | FieldType::Preset => Ok(json!(raw)),
            FieldType::Bool => Ok(json!(raw == "true")),
        };
        match v {
            Ok(v) => {
                out.insert(fld.name.into(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(errors)
    }
}

/// Form values from a job's spec (clone with changes).
pub fn from_spec(spec: &Value) -> (String, Values) {
    let kind = spec["kind"].as_str().unwrap_or("generate").to_owned();
    let values = fields(&kind)
        .iter()
        .map(|fld| {
            let v = &spec[fld.name];
            let text = match v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (fld.name.to_owned(), text)
        })
        .collect();
    (kind, values)
}

/// Inquiry copies a generation writes per identity when its inquiries have images (DCGAN faces):
/// `cemiface generate`'s `--inquiry-copies` default, and what the admin form counts.
pub const DEFAULT_INQUIRY_COPIES: usize = 5;

/// What a generate form will write, said before Launch.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationPlan {
    pub identities: usize,
    pub images_per_identity: usize,
    /// Copies of each inquiry image written next to its generated ones (0 for random identities).
    pub copies: usize,
    /// (m, images of each identity at that m): image k of an identity gets m[k mod len].
    pub per_m: Vec<(f64, usize)>,
    pub steps: usize,
}

impl GenerationPlan {
    /// Images the generator makes.
    pub fn generated(&self) -> usize {
        self.identities * self.images_per_identity
    }

    /// Image files in the data set: generated images plus inquiry copies.
    pub fn files(&self) -> usize {
        self.identities * (self.images_per_identity + self.copies)
    }

    /// Seconds at `rate` generated images per second measured at `rate_steps` DDIM steps
    /// (time per image scales with the steps).
    pub fn seconds_at(&self, rate: f64, rate_steps: usize) -> f64 {
        self.generated() as f64 / rate * self.steps as f64 / rate_steps.max(1) as f64
    }

    /// One line for the form.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} identities × {} images = {} generated",
            self.identities,
            self.images_per_identity,
            self.generated()
        );
        if self.copies > 0 {
            s.push_str(&format!(
                " + {} inquiry copies ({} per identity) = {} image files",
                self.identities * self.copies,
                self.copies,
                self.files()
            ));
        } else {
            s.push_str(" image files");
        }
        if self.per_m.len() > 1 {
            let parts: Vec<String> = self
                .per_m
                .iter()
                .map(|(m, n)| format!("{n} at m = {m}"))
                .collect();
            s.push_str(&format!(
                ". The m values are taken in turn: each identity gets {}",
                parts.join(", ")
            ));
        }
        s.push('.');
        s
    }
}

/// The plan of a generate form, or None while a field does not parse.
pub fn generation_plan(values: &Values) -> Option<GenerationPlan> {
    let get = |name: &str| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let identities: usize = get("identities")?.parse().ok()?;
    let images_per_identity: usize = get("images_per_identity")?.parse().ok()?;
    let steps: usize = get("steps").unwrap_or_else(|| "20".into()).parse().ok()?;
    let m: Vec<f64> = list(&get("m").unwrap_or_else(|| "0".into()))
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if m.is_empty() || images_per_identity == 0 {
        return None;
    }
    let per_m = m
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, (0..images_per_identity).filter(|k| k % m.len() == i).count()))
        .collect();
    let copies = if get("inquiries").as_deref() == Some("random") {
        0
    } else {
        DEFAULT_INQUIRY_COPIES
    };
    Some(GenerationPlan {
        identities,
        images_per_identity,
        copies,
        per_m,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_counts_copies_and_says_how_m_values_alternate() {
        let mut v = defaults("generate");
        let set = |v: &mut Values, n: &str, x: &str| v.iter_mut().find(|(k, _)| k == n).unwrap().1 = x.into();
        set(&mut v, "identities", "2");
        set(&mut v, "images_per_identity", "3");
        set(&mut v, "m", "0, 0.5");
        let p = generation_plan(&v).unwrap();
        assert_eq!((p.generated(), p.files()), (6, 16));
        assert_eq!(p.per_m, vec![(0.0, 2), (0.5, 1)]);
        assert_eq!(
            p.describe(),
            "2 identities × 3 images = 6 generated + 10 inquiry copies (5 per identity) = 16 image files. \
             The m values are taken in turn: each identity gets 2 at m = 0, 1 at m = 0.5."
        );
        assert!(
            (p.seconds_at(0.5, 10) - 24.0).abs() < 1e-9,
            "6 images at 0.5/s, twice the steps"
        );
        set(&mut v, "inquiries", "random");
        assert_eq!(generation_plan(&v).unwrap().files(), 6);
        set(&mut v, "identities", "x");
        assert!(generation_plan(&v).is_none());
    }

    #[test]
    fn defaults_make_a_spec_and_round_trip() {
        let spec = to_spec("generate", &defaults("generate")).unwrap();
        assert_eq!(spec["identities"], 4);
        assert_eq!(spec["m"], json!([0.0]));
        assert_eq!(spec["rec"], false);
        let (kind, values) = from_spec(&spec);
        assert_eq!(kind, "generate");
        assert_eq!(to_spec(&kind, &values).unwrap(), spec);
    }

    #[test]
    fn empty_optional_fields_are_left_out_and_bad_numbers_named() {
        let spec = to_spec("train-diffusion", &defaults("train-diffusion")).unwrap();
        assert!(spec.get("steps").is_none());
        let mut v = defaults("generate");
        v.iter_mut().find(|(n, _)| n == "m").unwrap().1 = "0, x".into();
        v.iter_mut().find(|(n, _)| n == "identities").unwrap().1 = "-3".into();
        let e = to_spec("generate", &v).unwrap_err();
        let names: Vec<&str> = e.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["identities", "m"]);
        let eval = to_spec("eval", &vec![("sets".into(), "a.bin, b.bin".into())]).unwrap();
        assert_eq!(eval["sets"], json!(["a.bin", "b.bin"]));
        assert!(eval.get("checkpoint").is_none());
    }
}
