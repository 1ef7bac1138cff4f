//! Small formatting helpers shared by the logs and the printed listings.

use std::time::Duration;

/// Seconds rounded to the tenth, for summary lines.
pub fn tenths(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}

/// Seconds rounded to the millisecond, for log fields.
pub fn millis(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Formats a byte count for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_bytes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(130 * 1024 * 1024), "130.0 MiB");
    }

    #[test]
    fn rounds_seconds() {
        assert_eq!(tenths(Duration::from_millis(3149)), 3.1);
        assert_eq!(tenths(Duration::from_millis(2950)), 3.0);
        assert_eq!(millis(1.23456), 1.235);
    }
}
