//! How times and sizes read, the same in the CLI's progress lines and on the pages.

/// Seconds as `1h02m` or `3m07s` (`--` when unknown).
pub fn eta(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "--".into();
    }
    let s = seconds.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Bytes as "12.3 MB".
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_bytes() {
        assert_eq!(eta(187.0), "3m07s");
        assert_eq!(eta(3720.0), "1h02m");
        assert_eq!(eta(f64::NAN), "--");
        assert_eq!(eta(-5.0), "0m00s");
        assert_eq!(bytes(1536), "1.5 kB");
        assert_eq!(bytes(5 << 20), "5.0 MB");
    }
}
