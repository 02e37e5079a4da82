//! `cemiface report-control` on a tiny generator trained by the CLI: the JSON shape the issue
//! names, the files, and range checks.

mod common;

use std::process::Command;

#[test]
fn report_control_measures_each_m_under_both_judges_and_writes_plot_and_sheet() {
    let Some(assets) = common::assets() else { return };
    let dir = common::temp_dir("report-control");
    let gen = common::tiny_generator(&dir, &assets);
    let out = dir.join("report");
    let run = Command::new(env!("CARGO_BIN_EXE_cemiface"))
        .args([
            "report-control",
            "--inquiries",
            "1",
            "--steps",
            "1",
            "--m",
            "-1,0,1",
            "--sheet-rows",
            "2",
            "--eta",
            "0",
            "--json",
        ])
        .arg("--checkpoint")
        .arg(&gen)
        .arg("--out")
        .arg(&out)
        .arg("--assets-dir")
        .arg(&assets)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        v["inquiries"].as_array().unwrap().len(),
        5,
        "4 photos + 1 DCGAN inquiry: {v}"
    );
    let judges = v["judges"].as_object().unwrap();
    // The generator's E_id (centred with its μ: the tiny preset has one) and the independent judge.
    let names: Vec<&String> = judges.keys().collect();
    assert_eq!(names, ["dlib-resnet (centred)", "mobileface"], "{v}");
    for j in judges.values() {
        assert!(j["spearman"].is_number() || j["spearman"].is_null(), "{j}");
        let means = j["mean_by_m"].as_object().unwrap();
        assert_eq!(means.keys().collect::<Vec<_>>(), ["-1", "0", "1"]);
        assert!(means.values().all(|s| s.as_f64().unwrap().abs() <= 1.0));
    }
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(file["judges"], v["judges"]);
    assert_eq!(v["eta"], 0.0, "the sampler's η is part of the report");
    // Every sample, so one can plot or re-analyse the run: [judge][inquiry][m], and the means above
    // are their column means.
    let samples: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("samples.json")).unwrap()).unwrap();
    assert_eq!(samples["sources"].as_array().unwrap().len(), 5, "{samples}");
    for (name, j) in judges {
        let rows = samples["similarity"][name].as_array().unwrap();
        assert_eq!(rows.len(), 5, "{name}: one row per inquiry");
        for (k, m) in ["-1", "0", "1"].iter().enumerate() {
            let mean = rows.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>() / 5.0;
            let reported = j["mean_by_m"][m].as_f64().unwrap();
            assert!(
                (mean - reported).abs() < 1e-5,
                "{name} m {m}: {mean} vs {reported}"
            );
        }
    }
    let found = samples["face_found"].as_array().unwrap();
    assert_eq!(found.len(), 5);
    for (k, m) in ["-1", "0", "1"].iter().enumerate() {
        let rate = found.iter().filter(|r| r[k].as_bool().unwrap()).count() as f64 / 5.0;
        assert_eq!(
            rate,
            v["face_rate_by_m"][m].as_f64().unwrap(),
            "face rate at m {m}"
        );
    }
    let sheet = image::open(out.join("contact_sheet.png")).unwrap();
    assert_eq!(
        (sheet.width(), sheet.height()),
        (104 + 4 + 4 * 36, 22 + 4 + 2 * 36),
        "a name column, a caption row, 2 rows of inquiry + 3 m"
    );
    let sheet = sheet.to_rgb8();
    assert!(
        cemiface_engine::report::plot::ink(&sheet, 108..256, 0..20) > 100,
        "column captions"
    );
    assert!(
        cemiface_engine::report::plot::ink(&sheet, 0..100, 26..98) > 50,
        "row names"
    );
    assert!(image::open(out.join("control.png")).unwrap().width() > 100);
    let svg = std::fs::read_to_string(out.join("control.svg")).unwrap();
    assert!(
        svg.contains("mobileface (spearman") && svg.contains("target (y = m)"),
        "legend in the SVG"
    );

    // Bad arguments fail with a message naming them.
    for (flag, value, message) in [
        ("--m", "0,1.5", "1.5 is outside [-1, 1]"),
        ("--eta", "2", "--eta 2 is outside [0, 1]"),
    ] {
        let bad = Command::new(env!("CARGO_BIN_EXE_cemiface"))
            .args(["report-control", flag, value, "--checkpoint"])
            .arg(&gen)
            .output()
            .unwrap();
        assert!(!bad.status.success(), "{flag} {value}");
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains(message),
            "{flag} {value}"
        );
    }
}
