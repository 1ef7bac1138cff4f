//! Logs: `tracing` events with fields, printed as text for people or one JSON object per line. The
//! last lines are also kept in memory, so a notification can carry what a run logged.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, LogFormat};

/// How many lines the tail keeps: more than a notification channel can carry.
const TAIL_LINES: usize = 200;

/// The last lines logged, each with its number (counting from the start).
static TAIL: Mutex<(u64, VecDeque<String>)> = Mutex::new((0, VecDeque::new()));

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(&value).map_err(|e| ConfigError {
                variable: "RUST_LOG".into(),
                message: format!("{value:?} is not a log filter: {e}"),
            })?
        }
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours only on a terminal: `docker logs` and files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.finish().with(TailLayer).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .finish()
            .with(TailLayer)
            .init(),
    }
    Ok(())
}

/// A mark in the log: [`lines_since`] it gives what was logged after.
pub fn mark() -> u64 {
    TAIL.lock().map(|tail| tail.0).unwrap_or(0)
}

/// The lines logged since `mark`, oldest first (as many as the tail still holds).
pub fn lines_since(mark: u64) -> Vec<String> {
    let Ok(tail) = TAIL.lock() else {
        return Vec::new();
    };
    let (count, lines) = &*tail;
    let wanted = count.saturating_sub(mark).min(lines.len() as u64) as usize;
    lines.iter().skip(lines.len() - wanted).cloned().collect()
}

fn keep(line: String) {
    if let Ok(mut tail) = TAIL.lock() {
        tail.0 += 1;
        tail.1.push_back(line);
        if tail.1.len() > TAIL_LINES {
            tail.1.pop_front();
        }
    }
}

/// Fields the tail leaves out: `summary` repeats the `run finished` line's other fields, and a
/// notification has room for little.
const TAIL_SKIPS: &[&str] = &["summary"];

/// Keeps each event as one line: `LEVEL message field=value ...`.
struct TailLayer;

impl<S: Subscriber> Layer<S> for TailLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line::default();
        event.record(&mut line);
        keep(format!(
            "{} {}{}",
            event.metadata().level(),
            line.message,
            line.fields
        ));
    }
}

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if TAIL_SKIPS.contains(&field.name()) {
            return;
        }
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if TAIL_SKIPS.contains(&field.name()) {
            return;
        }
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_gives_the_lines_since_a_mark() {
        // The tail is global; this is the only test that writes to it.
        let before = mark();
        keep("INFO one".into());
        keep("INFO two".into());
        assert_eq!(lines_since(before), ["INFO one", "INFO two"]);
        assert!(lines_since(mark()).is_empty());
        for n in 0..TAIL_LINES + 10 {
            keep(format!("INFO {n}"));
        }
        let all = lines_since(0);
        assert_eq!(all.len(), TAIL_LINES);
        assert_eq!(all.last().unwrap(), &format!("INFO {}", TAIL_LINES + 9));
    }

    #[test]
    fn events_become_one_line_each() {
        let mut line = Line::default();
        line.record_str(&field("message"), "volume synced");
        line.record_str(&field("volume"), "app");
        line.record_str(&field("summary"), "1 volume(s), ...");
        assert_eq!(
            format!("{}{}", line.message, line.fields),
            "volume synced volume=app"
        );
    }

    fn field(name: &'static str) -> Field {
        // A field of a callsite that has it: tracing builds fields only from metadata.
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                &META
            }
        }
        static CS: Cs = Cs;
        static META: tracing::Metadata<'static> = tracing::Metadata::new(
            "test",
            "test",
            tracing::Level::INFO,
            None,
            None,
            None,
            tracing::field::FieldSet::new(
                &["message", "volume", "summary"],
                tracing::callsite::Identifier(&CS),
            ),
            tracing::metadata::Kind::EVENT,
        );
        META.fields().field(name).unwrap()
    }
}
