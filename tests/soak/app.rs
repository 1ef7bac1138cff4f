//! The soak's app: a ledger of transfers between four accounts, kept in two volumes so that a
//! capture of the two at different instants shows. Every step appends one record to
//! `/ledger/ledger` (`seq time_ns from to amount`, where from, to and amount follow from seq), then
//! replaces `/bal/balances` (`seq a0 a1 a2 a3`) by a rename. A second loop replaces `/ledger/blob`
//! (300 kB between a `v K` and an `end K` line) every two seconds, so each live pass has data to
//! send. The ledger is append-only, so it is also the app's history: the state of both volumes at
//! any instant follows from it, and an archive can be checked against the instants its run froze.

/// The app, for `sh` in the test image. It carries on from what its volumes hold when restarted or
/// recreated (replaying a record the balances missed).
pub const LEDGER_APP: &str = r#"
L=/ledger/ledger; B=/bal/balances
touch $L
if [ -f $B ]; then read s a0 a1 a2 a3 < $B; else s=0 a0=1000 a1=1000 a2=1000 a3=1000; fi
apply() { amt=$(( ($1*7919)%100 + 1 )); f=$(($1%4)); t=$((($1+1)%4)); eval "a$f=\$((a$f-amt)); a$t=\$((a$t+amt))"; }
save() { printf '%d %d %d %d %d\n' $s $a0 $a1 $a2 $a3 > $B.tmp && mv $B.tmp $B; }
n=$(wc -l < $L)
while [ $s -lt $n ]; do s=$((s+1)); apply $s; done
save
( k=0
  [ -f /ledger/blob ] && k=$(head -n 1 /ledger/blob | cut -d' ' -f2)
  while :; do
    k=$((k+1))
    { echo "v $k"; head -c 300000 /dev/urandom | base64 -w 100; echo "end $k"; } > /ledger/blob.tmp
    mv /ledger/blob.tmp /ledger/blob
    sleep 2
  done ) &
while :; do
  n=$((s+1)); apply $n
  printf '%d %s %d %d %d\n' $n "$(date +%s%N)" $f $t $amt >> $L
  s=$n; save
  sleep 0.02
done
"#;

/// Static files beside the ledger, whose digest never changes.
pub const STATIC_FILES: &str = "mkdir -p /data/static && for i in $(seq 1 200); do \
    head -c 5000 /dev/urandom > /data/static/f$i; done";

/// What a copy of the two volumes holds (an archive's, a restored volume's).
pub struct Copy {
    pub ledger: String,
    pub balances: String,
    /// `None` where the blob did not exist yet.
    pub blob: Option<String>,
}

/// One record of the ledger.
pub struct Record {
    pub time_ns: u128,
}

/// The records of a ledger, checked: numbered from 1 without a gap, each with the accounts and
/// amount its number gives.
pub fn records(ledger: &str) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for (i, line) in ledger.lines().enumerate() {
        let seq = i as u64 + 1;
        let fields: Vec<&str> = line.split(' ').collect();
        let ok = fields.len() == 5
            && fields[0] == seq.to_string()
            && fields[2] == (seq % 4).to_string()
            && fields[3] == ((seq + 1) % 4).to_string()
            && fields[4] == amount(seq).to_string();
        let time_ns = fields.get(1).and_then(|t| t.parse::<u128>().ok());
        match (ok, time_ns) {
            (true, Some(time_ns)) => out.push(Record { time_ns }),
            _ => return Err(format!("ledger line {seq} is wrong: {line:?}")),
        }
    }
    if !ledger.is_empty() && !ledger.ends_with('\n') {
        return Err("the ledger ends in a torn record".into());
    }
    Ok(out)
}

fn amount(seq: u64) -> i64 {
    ((seq * 7919) % 100 + 1) as i64
}

/// The balances after the first `seq` records.
fn replay(seq: u64) -> [i64; 4] {
    let mut accounts = [1000i64; 4];
    for n in 1..=seq {
        accounts[(n % 4) as usize] -= amount(n);
        accounts[((n + 1) % 4) as usize] += amount(n);
    }
    accounts
}

/// The app's invariant on one copy of its volumes, and that its ledger is a prefix of the app's
/// whole history (`history`, read after it); returns the number of records the copy holds.
pub fn check(copy: &Copy, history: &str) -> Result<usize, String> {
    let records = records(&copy.ledger)?;
    if !history.starts_with(&copy.ledger) {
        return Err("the ledger is not a prefix of the app's history".into());
    }
    let fields: Vec<i64> = copy
        .balances
        .split_whitespace()
        .map(|f| f.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("balances unreadable: {:?}", copy.balances))?;
    if fields.len() != 5 {
        return Err(format!("balances unreadable: {:?}", copy.balances));
    }
    let n = records.len() as i64;
    let seq = fields[0];
    // The balances are replaced after the record is appended: they are the ledger's last state
    // or the one before it, never ahead of it (which is what two instants would give).
    if seq != n && seq != n - 1 {
        return Err(format!(
            "balances at record {seq} beside a ledger of {n} records: not one instant"
        ));
    }
    if fields[1..] != replay(seq.max(0) as u64) {
        return Err(format!("balances {:?} are not the ledger's", &fields[1..]));
    }
    if fields[1..].iter().sum::<i64>() != 4000 {
        return Err("money was made or lost".into());
    }
    if let Some(blob) = &copy.blob {
        let first = blob.lines().next().unwrap_or("");
        let last = blob.lines().last().unwrap_or("");
        let version = first.strip_prefix("v ").unwrap_or("?");
        if last != format!("end {version}") || blob.len() < 400_000 {
            return Err(format!(
                "the blob is torn: {first:?} ... {last:?}, {} bytes",
                blob.len()
            ));
        }
    }
    Ok(records.len())
}

/// Whether a copy holding the first `n` records of `history` was taken while the app was paused
/// in one of `windows` (pause and unpause times, ns): its last record was written before the thaw,
/// and the next record after the pause began (its time is read just before it is written, so a
/// pause that lands between the two makes it a little earlier: `slack_ns`).
pub fn taken_while_frozen(
    history: &[Record],
    n: usize,
    windows: &[(u128, u128)],
    slack_ns: u128,
) -> bool {
    let last = n.checked_sub(1).map(|i| history[i].time_ns);
    let next = history.get(n).map(|r| r.time_ns);
    windows.iter().any(|&(paused, thawed)| {
        last.is_none_or(|t| t < thawed) && next.is_none_or(|t| t + slack_ns > paused)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(n: u64, step_ns: u128) -> String {
        (1..=n)
            .map(|s| {
                format!(
                    "{s} {} {} {} {}\n",
                    s as u128 * step_ns,
                    s % 4,
                    (s + 1) % 4,
                    amount(s)
                )
            })
            .collect()
    }

    fn balances(seq: u64) -> String {
        let a = replay(seq);
        format!("{seq} {} {} {} {}\n", a[0], a[1], a[2], a[3])
    }

    #[test]
    fn a_copy_of_one_instant_passes_and_two_instants_fail() {
        let history = ledger(10, 1000);
        let copy = |n: u64, seq: u64| Copy {
            ledger: ledger(n, 1000),
            balances: balances(seq),
            blob: None,
        };
        assert_eq!(check(&copy(5, 5), &history), Ok(5));
        assert_eq!(check(&copy(5, 4), &history), Ok(5));
        assert!(check(&copy(5, 6), &history).is_err(), "balances ahead");
        assert!(check(&copy(5, 3), &history).is_err(), "balances behind");
        let mut rich = copy(5, 5);
        rich.balances = "5 2000 1000 1000 1000\n".into();
        assert!(check(&rich, &history).is_err());
        let mut torn = copy(5, 5);
        torn.ledger.pop();
        assert!(check(&torn, &history).is_err());
        let mut other = copy(5, 5);
        other.ledger = ledger(5, 999);
        assert!(check(&other, &history).is_err(), "not the app's history");
    }

    #[test]
    fn the_copy_must_fall_in_a_freeze() {
        let history = records(&ledger(10, 1000)).unwrap();
        // Records at 1000, 2000, ... A pause from 5500 to 6200 holds 5 records.
        assert!(taken_while_frozen(&history, 5, &[(5500, 6200)], 0));
        assert!(!taken_while_frozen(&history, 4, &[(5500, 6200)], 0));
        assert!(!taken_while_frozen(&history, 7, &[(5500, 6200)], 0));
        assert!(taken_while_frozen(&history, 4, &[(5500, 6200)], 600));
        assert!(!taken_while_frozen(&history, 5, &[], 0));
    }
}
