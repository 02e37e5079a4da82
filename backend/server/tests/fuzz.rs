//! The parsers of outside input survive a bounded, seeded fuzz run from the repo's corpus
//! (fuzz/corpus): 3,000 inputs per target, no panic. `cemiface fuzz --seconds N` runs longer.

use std::time::Duration;

use cemiface_server::commands::fuzz::{corpus, fuzz, Target};

#[test]
fn no_parser_panics_on_mutated_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let scratch = std::env::temp_dir().join(format!("cemiface-fuzz-test-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut report = Vec::new();
    for t in Target::ALL {
        let seeds = corpus(&dir, t).unwrap();
        let o = fuzz(t, &seeds, 1, 3_000, Duration::from_secs(600), &scratch);
        assert_eq!(o.execs, 3_000, "{t:?}");
        if !o.crashes.is_empty() {
            report.push(format!(
                "{}: {} panicking inputs, first {:?}",
                t.name(),
                o.crashes.len(),
                &o.crashes[0][..o.crashes[0].len().min(200)]
            ));
        }
    }
    std::fs::remove_dir_all(&scratch).ok();
    assert!(report.is_empty(), "{report:#?}");
}
