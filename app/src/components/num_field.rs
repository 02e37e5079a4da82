//! What a person types into the demo's number fields, checked without rewriting it: "0." stays
//! "0." while "0.5" is being typed, "250" steps is an error beside the field (not silently 100).
//! The page keeps the typed text, shows the error once the field loses focus, and starts a job only
//! when every field is valid.

use leptos::prelude::*;

use crate::demo_protocol::{MAX_SEED, MAX_STEPS};

/// One number field: the text as typed, whether it lost focus once, and how it is judged.
#[derive(Clone, Copy)]
pub struct TextField<T: 'static> {
    /// What the field holds now (updated on every keystroke).
    pub text: RwSignal<String>,
    /// What the page writes into the field: only its first value and values set from elsewhere,
    /// so typing is never written back (a browser may report a half-typed "0." differently).
    pub shown: RwSignal<String>,
    pub touched: RwSignal<bool>,
    parse: fn(&str) -> Result<T, String>,
}

impl<T: Copy + PartialEq + ToString + Send + Sync + 'static> TextField<T> {
    pub fn new(initial: T, parse: fn(&str) -> Result<T, String>) -> Self {
        let t = initial.to_string();
        Self {
            text: RwSignal::new(t.clone()),
            shown: RwSignal::new(t),
            touched: RwSignal::new(false),
            parse,
        }
    }

    /// A new text, kept as typed; a valid one becomes `value`.
    pub fn typed(&self, text: &str, value: RwSignal<T>) {
        self.text.set(text.to_owned());
        if let Ok(v) = (self.parse)(text) {
            value.set(v);
        }
    }

    /// What is wrong with the text, if anything.
    pub fn error(&self) -> Option<String> {
        (self.parse)(&self.text.get()).err()
    }

    /// The error once the field has lost focus (not while a number is being typed).
    pub fn shown_error(&self) -> Option<String> {
        if self.touched.get() {
            self.error()
        } else {
            None
        }
    }

    /// Shows `value` when something else sets it (Randomize, Re-run) and the text says otherwise.
    pub fn follow(self, value: RwSignal<T>) {
        Effect::new(move |_| {
            let v = value.get();
            if (self.parse)(&self.text.get_untracked()).ok() != Some(v) {
                self.text.set(v.to_string());
                self.shown.set(v.to_string());
                self.touched.set(false);
            }
        });
    }
}

/// DDIM steps: a whole number from 1 to [`MAX_STEPS`].
pub fn steps(text: &str) -> Result<u32, String> {
    let t = text.trim();
    match t.parse::<u32>() {
        Ok(n) if (1..=MAX_STEPS).contains(&n) => Ok(n),
        Ok(_) => Err(format!("steps must be between 1 and {MAX_STEPS}")),
        Err(_) if t.is_empty() => Err("enter a number of steps".into()),
        Err(_) => Err(format!("steps must be a whole number from 1 to {MAX_STEPS}")),
    }
}

/// The noise seed: a whole number from 0 to [`MAX_SEED`].
pub fn seed(text: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.parse::<u64>() {
        Ok(n) if n <= MAX_SEED => Ok(n),
        _ if t.is_empty() => Err("enter a seed".into()),
        _ => Err(format!("the seed must be a whole number from 0 to {MAX_SEED}")),
    }
}

/// DDIM η: a number from 0 to 1.
pub fn eta(text: &str) -> Result<f32, String> {
    let t = text.trim();
    match t.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ if t.is_empty() => Err("enter η".into()),
        _ => Err("η must be a number from 0 to 1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_is_judged_not_rewritten() {
        assert_eq!(eta("0.5"), Ok(0.5));
        assert!(
            eta("0.").is_ok_and(|v| v == 0.0),
            "a half-typed number is not an error"
        );
        assert!(eta("1.5").unwrap_err().contains("from 0 to 1"));
        assert!(eta("").is_err() && eta("abc").is_err() && eta("NaN").is_err());
        assert_eq!(steps("05"), Ok(5));
        assert_eq!(steps(" 20 "), Ok(20));
        assert!(steps("250").unwrap_err().contains("between 1 and 100"));
        assert!(steps("0").is_err() && steps("2.5").is_err() && steps("").is_err());
        assert_eq!(seed("0"), Ok(0));
        assert_eq!(seed(&MAX_SEED.to_string()), Ok(MAX_SEED));
        assert!(seed(&(MAX_SEED + 1).to_string()).is_err() && seed("-1").is_err());
    }
}
