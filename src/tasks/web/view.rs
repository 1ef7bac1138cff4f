//! What the templates show: times in the sidecar's zone with the zone named, sizes, and the run
//! history's plots as SVG drawn here (numbers only: nothing from outside reaches them as markup).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::format::human_bytes;
use crate::ops::history::RunRecord;

/// A moment as people read it: `2026-12-06 03:00 CET`, and how long ago or ahead.
#[derive(Debug, Clone)]
pub struct When {
    /// The local time with the zone.
    pub local: String,
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
    /// `5 min ago`, `in 2 h`.
    pub relative: String,
}

/// `at` in `tz`; `None` shows as never.
pub fn when(at: Option<DateTime<Utc>>, tz: Tz, now: DateTime<Utc>) -> Option<When> {
    let at = at?;
    let local = at
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string();
    let seconds = (now - at).num_seconds();
    let span = |s: i64| {
        let s = s.unsigned_abs();
        match s {
            0..60 => format!("{s} s"),
            60..3600 => format!("{} min", s / 60),
            3600..172_800 => format!("{} h", s / 3600),
            _ => format!("{} days", s / 86_400),
        }
    };
    let relative = if seconds >= 0 {
        format!("{} ago", span(seconds))
    } else {
        format!("in {}", span(seconds))
    };
    Some(When {
        local,
        iso: at.to_rfc3339(),
        relative,
    })
}

/// Bytes for people.
pub fn bytes(n: u64) -> String {
    human_bytes(n)
}

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name, in the legend.
    pub name: String,
    /// Its colour's class (`s0`, `s1`, ...).
    pub class: String,
    /// The polyline's points, `x,y x,y`.
    pub points: String,
    /// Each run's point, with its value for the tooltip.
    pub dots: Vec<Dot>,
}

/// One point.
#[derive(Debug, Clone)]
pub struct Dot {
    /// Position.
    pub x: f64,
    /// Position.
    pub y: f64,
    /// The run's number (its link).
    pub run: usize,
    /// The value, for people.
    pub label: String,
}

/// A plot of one quantity over the runs.
#[derive(Debug, Clone)]
pub struct Chart {
    /// What it shows.
    pub title: String,
    /// The highest value on the axis, for people.
    pub top: String,
    /// Its lines.
    pub series: Vec<Series>,
    /// The drawing's width and height.
    pub width: u32,
    /// The drawing's height.
    pub height: u32,
}

const WIDTH: u32 = 640;
const HEIGHT: u32 = 160;
const PAD: f64 = 8.0;

fn chart(
    title: &str,
    lines: Vec<(String, Vec<Option<f64>>)>,
    show: impl Fn(f64) -> String,
) -> Chart {
    let max = lines
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |m, v| m.max(*v));
    let max = if max > 0.0 { max } else { 1.0 };
    let n = lines.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let x_of = |i: usize| {
        if n <= 1 {
            WIDTH as f64 / 2.0
        } else {
            PAD + i as f64 * (WIDTH as f64 - 2.0 * PAD) / (n - 1) as f64
        }
    };
    let y_of = |v: f64| HEIGHT as f64 - PAD - v / max * (HEIGHT as f64 - 2.0 * PAD);
    let series = lines
        .into_iter()
        .enumerate()
        .map(|(k, (name, values))| {
            let dots: Vec<Dot> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    v.map(|v| Dot {
                        x: (x_of(i) * 10.0).round() / 10.0,
                        y: (y_of(v) * 10.0).round() / 10.0,
                        run: i,
                        label: show(v),
                    })
                })
                .collect();
            let points = dots
                .iter()
                .map(|d| format!("{},{}", d.x, d.y))
                .collect::<Vec<_>>()
                .join(" ");
            Series {
                name,
                class: format!("s{}", k % 6),
                points,
                dots,
            }
        })
        .collect();
    Chart {
        title: title.to_string(),
        top: show(max),
        series,
        width: WIDTH,
        height: HEIGHT,
    }
}

/// The history's plots: the longest freeze (and each group's), the duration, the bytes sent.
pub fn charts(runs: &[RunRecord]) -> Vec<Chart> {
    let mut groups: Vec<&String> = runs.iter().flat_map(|r| r.freezes.keys()).collect();
    groups.sort();
    groups.dedup();
    let mut freeze = vec![(
        "longest".to_string(),
        runs.iter().map(|r| Some(r.max_pause_ms as f64)).collect(),
    )];
    for group in groups.into_iter().take(5) {
        freeze.push((
            group.clone(),
            runs.iter()
                .map(|r| r.freezes.get(group).map(|ms| *ms as f64))
                .collect(),
        ));
    }
    vec![
        chart("Longest freeze (ms)", freeze, |v| format!("{v:.0} ms")),
        chart(
            "Duration (s)",
            vec![(
                "run".into(),
                runs.iter()
                    .map(|r| Some((r.finished - r.started).num_milliseconds() as f64 / 1000.0))
                    .collect(),
            )],
            |v| format!("{v:.1} s"),
        ),
        chart(
            "Sent over the link",
            vec![(
                "bytes".into(),
                runs.iter().map(|r| Some(r.sent_bytes as f64)).collect(),
            )],
            |v| bytes(v as u64),
        ),
    ]
}

/// `st_mode` as `ls` writes it.
pub fn mode(mode: u32) -> String {
    crate::tasks::browse::mode_text(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;
    use chrono::TimeZone;

    fn run(minute: u32, pause: u64, groups: &[(&str, u64)]) -> RunRecord {
        let started = Utc.with_ymd_and_hms(2026, 12, 1, 3, minute, 0).unwrap();
        RunRecord {
            started,
            finished: started + chrono::Duration::seconds(4),
            trigger: "schedule".into(),
            snapshot: false,
            outcome: Outcome::Success,
            cause: None,
            error: None,
            volumes: 1,
            bytes: 10,
            max_pause_ms: pause,
            archive: None,
            thawed: true,
            freezes: groups.iter().map(|(g, ms)| (g.to_string(), *ms)).collect(),
            sent_bytes: 1000,
            log: Vec::new(),
        }
    }

    #[test]
    fn one_point_per_run_scaled_into_the_drawing() {
        let runs = [
            run(0, 100, &[("app", 100)]),
            run(1, 50, &[]),
            run(2, 200, &[("app", 200), ("db", 20)]),
        ];
        let charts = charts(&runs);
        assert_eq!(charts.len(), 3);
        let freeze = &charts[0];
        assert_eq!(freeze.series.len(), 3, "longest, app, db");
        assert_eq!(freeze.series[0].dots.len(), 3);
        assert_eq!(freeze.series[1].dots.len(), 2, "app froze in two runs");
        assert_eq!(freeze.top, "200 ms");
        let ys: Vec<f64> = freeze.series[0].dots.iter().map(|d| d.y).collect();
        assert_eq!(ys[2], PAD, "the highest at the top");
        assert!(ys[1] > ys[0]);
        assert!(
            freeze.series[0]
                .points
                .chars()
                .all(|c| c.is_ascii_digit() || ",. ".contains(c))
        );
        assert_eq!(charts[1].series[0].dots[0].label, "4.0 s");
    }

    #[test]
    fn times_name_their_zone() {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 11, 0, 0).unwrap();
        let shown = when(Some(at), chrono_tz::Europe::Berlin, now).unwrap();
        assert_eq!(shown.local, "2026-12-06 12:00 CET");
        assert_eq!(shown.relative, "1 h ago");
        let ahead = when(
            Some(now + chrono::Duration::minutes(5)),
            chrono_tz::UTC,
            now,
        )
        .unwrap();
        assert_eq!(ahead.relative, "in 5 min");
        assert!(when(None, chrono_tz::UTC, now).is_none());
    }
}
