//! The faults the soak draws from, the moments of a run it injects them at, and what heals each.
//! Disks that can fill are real ext4 file systems on loop devices, mounted as volumes.

use std::process::Command;
use std::time::Duration;

use crate::common::{Env, docker, docker_output, wait_until};

/// What can go wrong.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Fault {
    SidecarKill,
    SidecarTerm,
    RemoteStop,
    RemoteRestart,
    NetworkCut,
    RemoteDiskFull,
    StateDiskFull,
    EngineRestart,
    AppRestart,
    AppRecreate,
    SecondTrigger,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::SidecarKill,
        Fault::SidecarTerm,
        Fault::RemoteStop,
        Fault::RemoteRestart,
        Fault::NetworkCut,
        Fault::RemoteDiskFull,
        Fault::StateDiskFull,
        Fault::EngineRestart,
        Fault::AppRestart,
        Fault::AppRecreate,
        Fault::SecondTrigger,
    ];

    /// The faults a restore meets.
    pub const DURING_RESTORE: [Fault; 5] = [
        Fault::SidecarKill,
        Fault::RemoteStop,
        Fault::NetworkCut,
        Fault::RemoteDiskFull,
        Fault::StateDiskFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::SidecarKill => "SIGKILL of the sidecar",
            Fault::SidecarTerm => "SIGTERM of the sidecar",
            Fault::RemoteStop => "remote stopped, started again",
            Fault::RemoteRestart => "remote restarted",
            Fault::NetworkCut => "remote's network cut, healed",
            Fault::RemoteDiskFull => "remote's disk full",
            Fault::StateDiskFull => "sidecar's state disk full",
            Fault::EngineRestart => "engine (dockerd) restarted",
            Fault::AppRestart => "app restarted",
            Fault::AppRecreate => "app removed and recreated",
            Fault::SecondTrigger => "second trigger mid-run",
        }
    }

    /// Whether the sidecar's process ends.
    pub fn ends_sidecar(self) -> bool {
        matches!(
            self,
            Fault::SidecarKill | Fault::SidecarTerm | Fault::EngineRestart
        )
    }
}

/// The moment of a run a fault is aimed at.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Moment {
    BetweenRuns,
    LivePass,
    Frozen,
    Upload,
    BorgCreate,
    Prune,
    Restore,
}

impl Moment {
    pub const IN_A_RUN: [Moment; 6] = [
        Moment::BetweenRuns,
        Moment::LivePass,
        Moment::Frozen,
        Moment::Upload,
        Moment::BorgCreate,
        Moment::Prune,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Moment::BetweenRuns => "between runs",
            Moment::LivePass => "live pass",
            Moment::Frozen => "frozen",
            Moment::Upload => "upload after the thaw",
            Moment::BorgCreate => "borg create",
            Moment::Prune => "prune",
            Moment::Restore => "restore",
        }
    }
}

/// A volume on an ext4 file system of its own (a sparse file on a loop device), so that it fills
/// up like a real disk.
pub struct LoopDisk {
    pub volume: String,
    device: String,
    _dir: tempfile::TempDir,
}

impl LoopDisk {
    pub fn new(env: &Env, suffix: &str, mib: u64) -> LoopDisk {
        // scripts/cleanup.sh finds the disks of a soak killed outright by this prefix.
        let dir = tempfile::Builder::new()
            .prefix("bs-test-disk-")
            .tempdir()
            .unwrap();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let device = run("losetup", &["-f", "--show", image.to_str().unwrap()]);
        let device = device.trim().to_string();
        run("mkfs.ext4", &["-q", "-m", "0", &device]);
        let volume = format!("{}-{suffix}", env.name);
        let opt = format!("device={device}");
        docker(&[
            "volume",
            "create",
            "--label",
            crate::common::TEST_LABEL,
            "--driver",
            "local",
            "--opt",
            "type=ext4",
            "--opt",
            &opt,
            &volume,
        ]);
        env.track_volume(&volume);
        LoopDisk {
            volume,
            device,
            _dir: dir,
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // The Env has removed the volume (it is dropped first); the device goes with the file.
        docker_output(&["volume", "rm", "-f", &self.volume]);
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fills the file system of `dir` in `container` to the last block; false if the container is not
/// running.
pub fn fill(container: &str, dir: &str) -> bool {
    let script = format!(
        "avail=$(df --output=avail -B1 {dir} | tail -n 1); \
         fallocate -l $avail {dir}/soak-filler 2>/dev/null; \
         cat /dev/zero >> {dir}/soak-filler 2>/dev/null; true"
    );
    docker_output(&["exec", container, "sh", "-c", &script])
        .status
        .success()
}

/// Removes what [`fill`] wrote.
pub fn unfill(container: &str, dir: &str) -> bool {
    docker_output(&["exec", container, "rm", "-f", &format!("{dir}/soak-filler")])
        .status
        .success()
}

/// Stops the engine the tests use (which stops every container) and starts it again as
/// `scripts/provision.sh` does. Only that engine: a second one on the machine goes on. (Not drawn
/// for a soak on a second engine: restarting one there deleted the first engine's `docker0`.)
pub fn restart_engine() {
    let pid = std::fs::read_to_string("/var/run/docker.pid").expect("dockerd's pid file");
    let pid = pid.trim().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    wait_until("dockerd to stop", Duration::from_secs(90), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    let started = Command::new("sh")
        .args(["-c", "nohup dockerd >>/var/log/dockerd.log 2>&1 &"])
        .status()
        .expect("sh runs");
    assert!(started.success());
    wait_until("dockerd to answer", Duration::from_secs(90), || {
        docker_output(&["info"]).status.success()
    });
}
