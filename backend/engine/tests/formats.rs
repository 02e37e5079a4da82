//! Data formats written by independent scripts (`scripts/reference/`): RecordIO as MXNet lays it
//! out, read by the engine's reader and the labelled-set and inquiry loaders built on it.

use std::path::PathBuf;

use cemiface_engine::data::labelled::{LabelledSet, RecordSet};
use cemiface_engine::data::recordio::RecordReader;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[test]
fn a_recordio_file_written_by_the_mxnet_layout_script_reads_back() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("recordio_fixture.json")).unwrap()).unwrap();
    let mut r = RecordReader::open(&golden("recordio_fixture.rec")).unwrap();
    assert_eq!(r.keys(), vec![0, 1, 2, 3, 4, 5]);
    for e in expected["records"].as_array().unwrap() {
        let rec = r.read(e["key"].as_u64().unwrap()).unwrap();
        assert_eq!(rec.label as f64, e["label"].as_f64().unwrap(), "{e}");
        let labels: Vec<f32> = e["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(rec.labels, labels, "{e}");
        assert_eq!(rec.id, e["id"].as_u64().unwrap());
        let hex: String = rec.image.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, e["image_hex"].as_str().unwrap());
    }
    // The header's [4, 6] leaves the identity-range records 4 and 5 out of the images.
    let keys: Vec<u64> = expected["image_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_u64().unwrap())
        .collect();
    assert_eq!(r.image_keys().unwrap(), keys);

    // As a labelled training set: labels 0, 7 (from the label array) and 1 → classes 0, 2, 1.
    let mut set = RecordSet::open(&golden("recordio_fixture.rec")).unwrap();
    assert_eq!((set.len(), set.classes()), (3, 3));
    assert_eq!((0..3).map(|i| set.label(i)).collect::<Vec<_>>(), vec![0, 2, 1]);
    assert_eq!(set.image(1).unwrap().get_pixel(1, 1).0, [0, 255, 0]);
}
