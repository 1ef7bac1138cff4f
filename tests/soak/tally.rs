//! What the soak counts, and the tables it prints at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Soak;
use crate::faults::{Fault, Moment};

/// What the soak counts for its tables.
#[derive(Default)]
pub struct Tally {
    /// (fault, the moment aimed at, the moment it landed in) -> times.
    pub faults: BTreeMap<(Fault, Moment, Moment), usize>,
    pub started: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub longest_freeze_ms: u64,
    pub longest_paused: Duration,
    pub archives_checked: usize,
    pub archives_unfrozen: usize,
    /// Archives a later run of the same step pruned before they could be checked.
    pub archives_pruned: usize,
    /// Steps with a fault after which something was left for the next run to clear.
    pub left_for_next_run: usize,
    pub restores_checked: usize,
    pub restores_with_fault: usize,
    /// (runs of one daemon process, resident kB, descriptors) when it reached 50 runs, and last.
    pub memory_at_50: Option<(usize, u64, usize)>,
    pub memory_last: Option<(usize, u64, usize)>,
}

impl Soak {
    pub(crate) fn report(&self) {
        let t = &self.tally;
        println!("\n| fault | aimed at | landed in | times |\n|---|---|---|---|");
        for ((fault, aimed, landed), n) in &t.faults {
            println!(
                "| {} | {} | {} | {n} |",
                fault.name(),
                aimed.name(),
                landed.name()
            );
        }
        let memory = |m: Option<(usize, u64, usize)>| {
            m.map_or("not reached".to_string(), |(runs, rss, fds)| {
                format!("{rss} kB, {fds} descriptors after {runs} runs of one process")
            })
        };
        println!("\n| measure | value |\n|---|---|");
        println!("| seed | {} |", self.seed);
        println!("| runs asked for | {} |", t.started);
        println!("| runs succeeded | {} |", t.succeeded);
        println!("| runs failed (with their reason) | {} |", t.failed);
        println!("| runs cut short (process ended) | {} |", t.interrupted);
        println!(
            "| longest freeze (run finished) | {} ms |",
            t.longest_freeze_ms
        );
        println!(
            "| longest the app stayed paused (engine events) | {} ms |",
            t.longest_paused.as_millis()
        );
        println!(
            "| archives checked | {} ({} taken with the app down; {} pruned by a later run first) |",
            t.archives_checked, t.archives_unfrozen, t.archives_pruned
        );
        println!(
            "| restores checked | {} ({} met a fault first) |",
            t.restores_checked, t.restores_with_fault
        );
        println!(
            "| faulted steps that left something for the next run to clear | {} |",
            t.left_for_next_run
        );
        println!("| daemon at 50 runs | {} |", memory(t.memory_at_50));
        println!("| daemon at the end | {} |", memory(t.memory_last));
        println!("| promises broken | {} |", self.violations.len());
    }
}
