//! The link to the remote: the container bridge as it is, or shaped to 10 Mbit/s both ways with a
//! token bucket (`tc tbf`; netem is not in this kernel). Both directions are shaped on the
//! remote's side: its `eth0` egress inside its network namespace (what it sends), and the egress
//! of its veth peer on the host (what it receives).

use std::process::Command;

use crate::common::docker;

/// The tbf parameters: 10 Mbit/s, a 32 KiB bucket, packets queued for at most 50 ms.
pub const TBF: [&str; 7] = ["tbf", "rate", "10mbit", "burst", "32kb", "latency", "50ms"];

/// Which link a cell is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The Docker bridge network, unshaped.
    Bridge,
    /// 10 Mbit/s both ways.
    Shaped,
}

impl Link {
    /// Both, in the order a round measures them.
    pub const ALL: [Link; 2] = [Link::Bridge, Link::Shaped];

    /// How the tables name it.
    pub fn label(self) -> &'static str {
        match self {
            Link::Bridge => "container bridge",
            Link::Shaped => "10 Mbit/s both ways (tc tbf)",
        }
    }

    /// Shapes the remote for this link; the shaping lasts as long as the value returned.
    pub fn apply(self, remote: &str) -> Option<Shaping> {
        (self == Link::Shaped).then(|| Shaping::apply(remote))
    }
}

/// The remote's two qdiscs; dropping it removes them.
pub struct Shaping {
    /// The remote's init process, whose network namespace holds its `eth0`.
    pid: String,
    /// The host end of the remote's veth pair.
    pub host_veth: String,
}

impl Shaping {
    /// Puts tbf on the remote's `eth0` and on its veth peer on the host.
    pub fn apply(remote: &str) -> Shaping {
        let shaping = Shaping {
            pid: docker(&["inspect", "--format", "{{.State.Pid}}", remote])
                .trim()
                .to_string(),
            host_veth: host_veth(remote),
        };
        // From here on a failure unwinds through the drop, which removes what was added.
        run(&with_tbf(
            &shaping.inside(&["tc", "qdisc", "replace", "dev", "eth0", "root"]),
        ));
        run(&with_tbf(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            &shaping.host_veth,
            "root",
        ]));
        shaping
    }

    /// The argv that runs `argv` in the remote's network namespace.
    fn inside<'a>(&'a self, argv: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["nsenter", "-t", &self.pid, "-n"];
        all.extend(argv);
        all
    }

    /// Bytes the host has sent into the remote through the shaped link (tbf's counter): what
    /// crossed the wire towards the remote, headers included.
    pub fn bytes_to_remote(&self) -> u64 {
        let out = output(&["tc", "-s", "qdisc", "show", "dev", &self.host_veth]);
        out.split_whitespace()
            .skip_while(|w| *w != "Sent")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no Sent counter in tc's output: {out}"))
    }
}

impl Drop for Shaping {
    fn drop(&mut self) {
        quiet(&["tc", "qdisc", "del", "dev", &self.host_veth, "root"]);
        quiet(&self.inside(&["tc", "qdisc", "del", "dev", "eth0", "root"]));
    }
}

/// The host interface paired with the container's `eth0`: the one whose ifindex is the
/// container's `eth0` iflink.
fn host_veth(container: &str) -> String {
    let iflink = docker(&["exec", container, "cat", "/sys/class/net/eth0/iflink"]);
    let iflink = iflink.trim();
    std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net is readable")
        .filter_map(Result::ok)
        .find(|dev| {
            std::fs::read_to_string(dev.path().join("ifindex")).is_ok_and(|i| i.trim() == iflink)
        })
        .map(|dev| dev.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no host interface with ifindex {iflink} (peer of {container})"))
}

/// `argv` followed by the tbf parameters.
fn with_tbf<'a>(argv: &[&'a str]) -> Vec<&'a str> {
    [argv, &TBF[..]].concat()
}

/// Runs `argv`; panics with its stderr when it fails.
fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", argv[0]));
    assert!(
        out.status.success(),
        "{} failed: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `argv` whatever comes of it (cleanup: the qdisc may be gone with its container).
fn quiet(argv: &[&str]) {
    let _ = Command::new(argv[0]).args(&argv[1..]).output();
}

/// Runs `argv` and returns its stdout; panics when it fails.
fn output(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", argv[0]));
    assert!(out.status.success(), "{} failed", argv.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
