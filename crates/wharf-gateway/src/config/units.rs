//! Human-friendly units in config files: durations (`500ms`, `2s`, `1m`) and sizes (`64KiB`, `10MB`).

use std::time::Duration;

/// Parses `"250ms"`, `"2s"`, `"5m"`, `"1h"`; a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. \"500ms\", \"2s\" or \"1m\""))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}`; use ms, s, m, h or d"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("duration `{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `"1024"`, `"64KB"`, `"64KiB"`, `"10MB"`, `"1GiB"`; decimal and binary units are both 1024-based
/// because that is what nginx's `client_max_body_size 10m` means to most users.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; write e.g. \"512KB\" or \"10MB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`; use KB, MB or GB"
            ));
        }
    };
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("250ms", 250),
            ("2s", 2000),
            ("1m", 60_000),
            ("3", 3000),
            ("1.5s", 1500),
        ];
        for (input, ms) in ok {
            assert_eq!(
                parse_duration(input).unwrap(),
                Duration::from_millis(ms),
                "{input}"
            );
        }
        for bad in ["", "s", "2x", "-1s", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("10", 10),
            ("1KB", 1024),
            ("2MiB", 2 << 20),
            ("1g", 1 << 30),
        ];
        for (input, n) in ok {
            assert_eq!(parse_size(input).unwrap(), n, "{input}");
        }
        for bad in ["", "MB", "1TB", "99999999999999999999GB"] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }
}
