//! Value parsers for durations and sizes on the command line.

use std::time::Duration;

/// `250ms`, `4s`, `2m`, or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else {
        (value, 1.0)
    };
    let seconds: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a duration (e.g. 500ms, 4s, 2m)"))?;
    Duration::try_from_secs_f64(seconds * scale)
        .map_err(|_| format!("{value:?} is not a duration (e.g. 500ms, 4s, 2m)"))
}

/// `4194304`, `512Ki`, `4Mi`, `1Gi` (or `k`, `M`, `G` for powers of 1000).
pub fn parse_bytes(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let units: [(&str, usize); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(suffix, scale)| value.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((value, 1));
    number
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{value:?} is not a size in bytes (e.g. 4194304, 512Ki, 4Mi)"))
}

#[cfg(test)]
#[path = "unit_tests/units_tests.rs"]
mod tests;
