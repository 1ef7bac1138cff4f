//! What the benches share besides the test harness: a section that fails without stopping the
//! others, and writing one section of `BENCHMARKS.md`.

// Each bench is a crate of its own that uses some of these.
#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Runs one section; a panic becomes the section's failure, so the other sections still report.
pub fn attempt<T>(name: &str, section: impl FnOnce() -> T) -> Result<T, String> {
    eprintln!("== {name}");
    catch_unwind(AssertUnwindSafe(section)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".to_string());
        eprintln!("== {name} failed: {message}");
        message
    })
}

/// Writes `section`, which begins with `heading`, into `BENCHMARKS.md`: in place of its old self,
/// or at the end. Returns the file's path.
pub fn write_section(heading: &str, section: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = match old.find(&format!("\n{heading}\n")) {
        Some(start) => {
            let after = start + 1 + heading.len();
            let end = old[after..]
                .find("\n## ")
                .map_or(old.len(), |i| after + i + 1);
            format!("{}\n{section}\n{}", &old[..start], &old[end..])
        }
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(&path, new.trim_end().to_string() + "\n").expect("BENCHMARKS.md is writable");
    path
}
