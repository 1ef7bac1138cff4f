//! The remote: a container of the remote image (sshd, rsync, borg, the guard as the forced command
//! of the test's key) with its host key pinned for the sidecar, and what is on it: the mirror, the
//! borg repository and its archives, and the digests that compare a volume with its mirror.

use std::time::{Duration, Instant};

use super::{Env, docker, docker_output, wait_until};

/// The remote image under test.
pub const REMOTE_IMAGE: &str = "backup-sidecar-remote:latest";
/// The guard's path on the remote.
pub const GUARD: &str = "/usr/local/lib/backup-sidecar/guard";
/// The borg passphrase of test repositories.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A running remote.
pub struct Remote {
    /// Container name, also its host name on the network.
    pub name: String,
}

impl Env {
    /// Starts a guarded remote (sshd, rsync, borg, the guard as the forced command of this test's
    /// key), writes known_hosts for it, and initialises an encrypted, append-only borg repository
    /// at /backup/borg with `guard --setup`. With `GUARD=off` among the `docker run` arguments the
    /// key is a plain root login and the repository a plain `borg init`.
    pub fn remote(&self) -> Remote {
        self.remote_with(&[])
    }

    /// [`Env::remote`] with extra `docker run` arguments (a small tmpfs for the mirror, say).
    pub fn remote_with(&self, extra_args: &[&str]) -> Remote {
        let public = std::fs::read_to_string(self.ssh_path("id_ed25519.pub")).unwrap();
        let authorized = format!("AUTHORIZED_KEYS={}", public.trim());
        let mut args = vec!["--network", &self.network, "-e", &authorized];
        args.extend(extra_args);
        let name = self.container("remote", &args, REMOTE_IMAGE, &[]);
        let started = Instant::now();
        loop {
            let out = docker_output(&[
                "exec",
                &name,
                "cat",
                "/etc/ssh/keys/ssh_host_ed25519_key.pub",
            ]);
            let logs = docker_output(&["logs", &name]);
            // sshd -e logs to stderr.
            if out.status.success()
                && String::from_utf8_lossy(&logs.stderr).contains("Server listening")
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "remote did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let remote = Remote { name };
        self.pin_host_key(&remote);
        if extra_args.contains(&"GUARD=off") {
            self.borg(&remote, &["init", "-e", "repokey", "/backup/borg"]);
        } else {
            let setup = format!("printf %s '{PASSPHRASE}' | {GUARD} --setup");
            self.on_remote(&remote, &setup);
        }
        remote
    }

    /// Writes known_hosts with the remote's current host key.
    pub fn pin_host_key(&self, remote: &Remote) {
        self.pin_host_key_at(remote, "known_hosts", &remote.name);
    }

    /// Writes `file` in the ssh directory with the remote's current host key for `address`
    /// (`[ip]:port` for a published port).
    pub fn pin_host_key_at(&self, remote: &Remote, file: &str, address: &str) {
        let host_key = docker(&[
            "exec",
            &remote.name,
            "cat",
            "/etc/ssh/keys/ssh_host_ed25519_key.pub",
        ]);
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            self.ssh_path(file),
            format!("{address} {}\n", key.join(" ")),
        )
        .unwrap();
    }

    /// The host port the remote's sshd is published at (`-p ADDRESS::22`).
    pub fn published_port(&self, remote: &Remote) -> String {
        let port = docker(&["port", &remote.name, "22"]);
        port.trim().rsplit(':').next().unwrap().to_string()
    }

    /// Waits until sshd accepts connections on the remote (after a restart: the entrypoint first
    /// runs the guard's setup).
    pub fn wait_sshd(&self, remote: &Remote) {
        wait_until("sshd", Duration::from_secs(20), || {
            let probe = "bash -c '</dev/tcp/127.0.0.1/22' 2>/dev/null && echo yes || true";
            docker_output(&["exec", &remote.name, "sh", "-c", probe])
                .stdout
                .starts_with(b"yes")
        });
    }

    /// Runs a shell command on the remote and returns stdout.
    pub fn on_remote(&self, remote: &Remote, script: &str) -> String {
        docker(&["exec", &remote.name, "sh", "-c", script])
    }

    /// Names of the mirrored volume directories.
    pub fn mirrored(&self, remote: &Remote) -> Vec<String> {
        let mut names: Vec<String> = self
            .on_remote(remote, "ls -1 /backup/mirror")
            .lines()
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    /// Runs borg on the remote with the test repository's passphrase; returns stdout.
    pub fn borg(&self, remote: &Remote, args: &[&str]) -> String {
        docker(
            &self
                .borg_argv(remote, false, args)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    }

    /// The `docker exec` argv for borg on the remote (`detach`: in the background).
    pub fn borg_argv(&self, remote: &Remote, detach: bool, args: &[&str]) -> Vec<String> {
        let mut argv = vec!["exec".to_string()];
        if detach {
            argv.push("-d".into());
        }
        argv.extend(["-e".into(), format!("BORG_PASSPHRASE={PASSPHRASE}")]);
        argv.extend([remote.name.clone(), "borg".into()]);
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// Archives in the test repository.
    pub fn archives(&self, remote: &Remote) -> Vec<String> {
        self.borg(remote, &["list", "--short", "/backup/borg"])
            .lines()
            .map(String::from)
            .collect()
    }

    /// The item paths of an archive.
    pub fn archive_items(&self, remote: &Remote, archive: &str) -> Vec<String> {
        self.borg(
            remote,
            &["list", "--short", &format!("/backup/borg::{archive}")],
        )
        .lines()
        .map(String::from)
        .collect()
    }

    /// One file of an archive.
    pub fn archive_file(&self, remote: &Remote, archive: &str, path: &str) -> String {
        self.borg(
            remote,
            &[
                "extract",
                "--stdout",
                &format!("/backup/borg::{archive}"),
                path,
            ],
        )
    }
}

/// A listing of a directory tree (type, mode, owner, file size, link target; not directory sizes,
/// which depend on the file system) and checksums of its
/// files, for comparing a volume with its mirror. `sh` runs it where the tree is.
pub const TREE_DIGEST: &str = "find . \\( -type d -printf '%p %y %m %U:%G\\n' \\) \
    -o -printf '%p %y %m %U:%G %s %l\\n' | LC_ALL=C sort; \
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum";

/// Content, modes, owners, link counts, times (to the nanosecond), symlink targets, and every
/// extended attribute (ACLs included) of the tree under the current directory.
pub const FULL_DIGEST: &str = "find . -printf '%p %y %m %U:%G %n %s %T@ %l\\n' | LC_ALL=C sort; \
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum; \
    find . -print0 | LC_ALL=C sort -z | xargs -0 getfattr -h -d -m - --absolute-names 2>/dev/null";

/// The digest of a volume's content.
pub fn volume_digest(env: &Env, volume: &str) -> String {
    env.in_volume(volume, &format!("cd /data && {{ {TREE_DIGEST}; }}"))
}

/// The digest of a directory on the remote.
pub fn remote_digest(env: &Env, remote: &Remote, dir: &str) -> String {
    env.on_remote(remote, &format!("cd {dir} && {{ {TREE_DIGEST}; }}"))
}
