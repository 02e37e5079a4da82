//! Schedule, x̂0 and DDIM coefficients against `scripts/reference/schedule_golden.py`; sampler
//! determinism and callback order.

use std::ops::ControlFlow;

use candle_core::{Device, Tensor};
use cemiface_engine::diffusion::ddim::Ddim;
use cemiface_engine::diffusion::schedule::{NoiseSchedule, ScheduleConfig};
use cemiface_engine::noise::NoiseRng;

fn golden() -> serde_json::Value {
    serde_json::from_str(include_str!("golden/schedule.json")).unwrap()
}

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&ScheduleConfig::default()).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

#[test]
fn alphas_cumprod_and_ddim_coefficients_match_numpy() {
    let g = golden();
    let s = schedule();
    for (t, v) in g["alphas_cumprod"].as_object().unwrap() {
        let t: usize = t.parse().unwrap();
        assert!(close(s.alphas_cumprod[t], v.as_f64().unwrap(), 1e-12), "ᾱ_{t}");
    }
    let ddim = Ddim::new(s, 20, 1.0).unwrap();
    let want: Vec<usize> = g["ddim20_timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(ddim.timesteps(), want.as_slice());
    for (i, c) in g["ddim20_eta1"].as_array().unwrap().iter().enumerate() {
        let got = ddim.coefficients(i);
        assert_eq!(got.t as u64, c["t"].as_u64().unwrap());
        assert!(
            close(got.alpha_bar_prev, c["alpha_bar_prev"].as_f64().unwrap(), 1e-12),
            "step {i}"
        );
        assert!(
            close(got.sigma, c["sigma"].as_f64().unwrap(), 1e-9),
            "σ at step {i}"
        );
    }
}

#[test]
fn ddim_updates_and_x0_match_numpy() {
    let g = golden();
    let dev = Device::Cpu;
    let v = |k: &str| -> Tensor {
        let x: Vec<f32> = g["inputs"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        Tensor::from_vec(x, (1, 1, 1, 6), &dev).unwrap()
    };
    let (x, eps, z) = (v("x"), v("eps"), v("z"));
    let check = |got: &Tensor, want: &serde_json::Value, what: &str| {
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(want.as_array().unwrap()) {
            assert!(
                (*a as f64 - b.as_f64().unwrap()).abs() < 1e-4,
                "{what}: {got:?} vs {want}"
            );
        }
    };
    let ddim = Ddim::new(schedule(), 20, 1.0).unwrap();
    for (i, want) in g["steps_eta1"].as_object().unwrap() {
        let (xp, x0) = ddim.step(i.parse().unwrap(), &x, &eps, &z).unwrap();
        check(&xp, &want["x_prev"], &format!("x_prev step {i}"));
        check(&x0, &want["x0"], &format!("x0 step {i}"));
    }
    let ddim0 = Ddim::new(schedule(), 20, 0.0).unwrap();
    check(
        &ddim0.step(10, &x, &eps, &z).unwrap().0,
        &g["step10_eta0_x_prev"],
        "η = 0",
    );
    // The schedule's own x̂0 (per-sample timesteps) agrees with the sampler's.
    let t = ddim.coefficients(10).t as u32;
    let x0 = ddim.schedule().predict_x0(&x, &[t], &eps, true).unwrap();
    check(&x0, &g["steps_eta1"]["10"]["x0"], "predict_x0");
}

#[test]
fn bad_step_counts_and_eta_are_rejected() {
    assert!(Ddim::new(schedule(), 0, 1.0)
        .unwrap_err()
        .to_string()
        .contains("1..=1000"));
    assert!(Ddim::new(schedule(), 1001, 1.0).is_err());
    assert!(Ddim::new(schedule(), 20, 1.5)
        .unwrap_err()
        .to_string()
        .contains("eta"));
}

#[test]
fn sampling_is_deterministic_per_seed_and_the_callback_sees_every_step() {
    let dev = Device::Cpu;
    let ddim = Ddim::new(schedule(), 10, 1.0).unwrap();
    // A toy ε-model: predicts 0.5·x (enough to exercise the chain).
    let run = |seeds: &[u64], stop: Option<usize>| {
        let mut rngs: Vec<NoiseRng> = seeds.iter().map(|&s| NoiseRng::new(s)).collect();
        let mut seen = Vec::new();
        let out = ddim
            .sample(
                (3, 4, 4),
                &mut rngs,
                &dev,
                |x, _t| Ok((x * 0.5)?),
                |info| {
                    seen.push((info.step, info.t));
                    if Some(info.step) == stop {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
            .unwrap();
        (out, seen)
    };
    let (a, seen) = run(&[7, 8], None);
    let (b, _) = run(&[7, 8], None);
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&a), flat(&b));
    let expected: Vec<(usize, usize)> = (0..10).map(|i| (i, 900 - 100 * i)).collect();
    assert_eq!(seen, expected);
    // Image 0 does not depend on what else is in the batch.
    let (alone, _) = run(&[7], None);
    assert_eq!(flat(&alone), flat(&a.narrow(0, 0, 1).unwrap()));
    let (other, _) = run(&[9, 8], None);
    assert_ne!(flat(&other.narrow(0, 0, 1).unwrap()), flat(&alone));
    // Early stop after step 2 returns x̂0 of that step.
    let (_, seen) = run(&[7], Some(2));
    assert_eq!(seen.len(), 3);
}
