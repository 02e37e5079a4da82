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
    Field { name, label, ty, default }
}

/// Job kinds in the order the form offers them.
pub const KINDS: [&str; 4] = ["generate", "train-diffusion", "train-fr", "eval"];

use FieldType::*;

const GENERATE: &[Field] = &[
    f("generator", "Generator (default, or job:<id> of a train-diffusion job)", Text, "default"),
    f("inquiries", "Inquiry identities", Choice(&["dcgan", "random"]), "dcgan"),
    f("identities", "Identities", Int, "4"),
    f("images_per_identity", "Images per identity", Int, "4"),
    f("m", "Similarity targets m (comma-separated, in [-1, 1])", FloatList, "0"),
    f("steps", "DDIM steps", Int, "20"),
    f("eta", "η", Float, "1"),
    f("seed", "Seed", Int, "0"),
    f("format", "Image format", Choice(&["png", "jpeg"]), "png"),
    f("rec", "Also write train.rec / train.idx", Bool, "false"),
];

const TRAIN_DIFFUSION: &[Field] = &[
    f("config", "Preset", Choice(&["latent-dcgan", "demo-64", "paper-112", "tiny-32"]), "latent-dcgan"),
    f("steps", "Steps (empty: the preset's)", OptInt, ""),
    f("batch_size", "Batch size (empty: the preset's)", OptInt, ""),
    f("checkpoint_every", "Checkpoint every N steps (empty: the preset's)", OptInt, ""),
    f("seed", "Seed (empty: the preset's)", OptInt, ""),
    f("sample_grid", "Sample grid at each checkpoint", Bool, "true"),
];

const TRAIN_FR: &[Field] = &[
    f("config", "Preset", Choice(&["fr-tiny", "fr-paper"]), "fr-tiny"),
    f("data", "Data (job:<id> of a generate job, or a folder / .rec on the server)", Text, ""),
    f("steps", "Steps (empty: the preset's epochs)", OptInt, ""),
    f("batch_size", "Batch size (empty: the preset's)", OptInt, ""),
];

const EVAL: &[Field] = &[
    f("checkpoint", "Checkpoint (job:<id> of a train-fr job; empty: dlib)", OptText, ""),
    f("sets", "Sets (.bin files or pair lists on the server, comma-separated)", TextList, ""),
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
    fields(kind).iter().map(|f| (f.name.to_owned(), f.default.to_owned())).collect()
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
            FieldType::Int => raw.parse::<u64>().map(|n| json!(n)).map_err(|_| bad("not a whole number")),
            FieldType::OptInt if raw.is_empty() => continue,
            FieldType::OptInt => raw.parse::<u64>().map(|n| json!(n)).map_err(|_| bad("not a whole number")),
            FieldType::Float => raw.parse::<f64>().map(|x| json!(x)).map_err(|_| bad("not a number")),
            FieldType::FloatList => list(raw)
                .map(|p| p.parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
                .map(|v| json!(v))
                .map_err(|_| bad("not a list of numbers")),
            FieldType::TextList => Ok(json!(list(raw).collect::<Vec<_>>())),
            FieldType::OptText if raw.is_empty() => continue,
            FieldType::Text | FieldType::OptText | FieldType::Choice(_) => Ok(json!(raw)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
