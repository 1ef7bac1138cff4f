//! Second places for the remote's copy of its borg repository (the `copy` settings of its
//! guard.conf): real servers of each kind the guard copies to, on the test's network, and the
//! remote configured to copy there.
//!
//! - [`CopyKind::Sftp`]: a container of the remote image with `GUARD=off`, a plain OpenSSH server
//!   (internal-sftp), reached by rclone's sftp backend.
//! - [`CopyKind::Webdav`]: a container of the remote image running `rclone serve webdav`.
//! - [`CopyKind::Borg`]: a second ssh host (the remote image, `GUARD=off`) holding a second borg
//!   repository, reached through an ssh client config.
//! - [`CopyKind::S3`]: moto's S3 server (in memory; it emulates versioning and object lock), a
//!   host process from the venv `scripts/provision.sh --tests` makes in /opt/moto, behind a socat
//!   bound to the gateway address of the test's network (the address the containers reach the
//!   host at), so that [`Env::stop_copy_target`] can cut it without losing its content.
//!
//! The remote authenticates as the owner would set it up: a key generated on the remote itself
//! (its public half authorized on the ssh targets), host keys pinned (rclone 1.60 checks none
//! unless `known_hosts_file` is set), passwords obscured with `rclone obscure`, every secret file
//! mode 600. The client side of it is kept in [`CopyTarget::files`], so that a new remote can be
//! given the same configuration when the first one is gone ([`Env::fetch_copy_to`]).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::{Env, REMOTE_IMAGE, Remote, docker, docker_output, wait_until};

/// The guard's settings on the remote, where the `copy` lines go.
pub const GUARD_CONF: &str = "/etc/backup-sidecar/guard.conf";
/// rclone's config on the remote (the guard's default `copy_config` for the rclone kind).
pub const RCLONE_CONF: &str = "/etc/backup-sidecar/rclone.conf";
/// The ssh client config of the borg kind (the guard's default `copy_config` for it).
pub const COPY_SSH_CONFIG: &str = "/etc/backup-sidecar/copy_ssh_config";
/// The second repository's passphrase file (the guard's default `copy_passphrase_file`).
pub const COPY_PASSPHRASE_FILE: &str = "/etc/backup-sidecar/copy.passphrase";
/// The remote's key for the ssh targets (sftp and borg), generated on the remote.
pub const COPY_KEY: &str = "/etc/backup-sidecar/copy_key";
/// The pinned host key of the ssh target.
pub const COPY_KNOWN_HOSTS: &str = "/etc/backup-sidecar/copy_known_hosts";
/// The second repository's passphrase: not the test repository's ([`super::PASSPHRASE`]), so a
/// copy made with the wrong one shows.
pub const COPY_PASSPHRASE: &str = "a second horse for the second copy";
/// The rclone remote (section) every rclone kind is configured as.
pub const RCLONE_REMOTE: &str = "offsite";
/// Where the second repository lies on the borg target.
pub const BORG_COPY_PATH: &str = "/backup/copy-borg";
/// The directory the sftp copy goes to on the sftp target (absolute: rclone's sftp backend takes
/// a leading `/` as the server's root).
pub const SFTP_COPY_PATH: &str = "/backup/copy";
/// What the webdav server serves, in its container; the copy goes to `backup/borg` below it.
pub const WEBDAV_ROOT: &str = "/srv/dav";
/// The webdav server's user and password: distinctive, so finding one in a log means it leaked.
pub const WEBDAV_USER: &str = "davuser_secret";
pub const WEBDAV_PASS: &str = "davpass_secret";
/// The webdav server's port.
pub const WEBDAV_PORT: u16 = 8080;
/// moto's server, installed by `scripts/provision.sh --tests`.
pub const MOTO_SERVER: &str = "/opt/moto/bin/moto_server";
/// The S3 credentials (moto takes any) and bucket.
pub const S3_ACCESS_KEY: &str = "s3access_secret";
pub const S3_SECRET_KEY: &str = "s3secretkey_secret";
pub const S3_BUCKET: &str = "copybucket";

/// The kinds of second place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    Sftp,
    Webdav,
    Borg,
    S3,
}

impl CopyKind {
    /// The guard.conf `copy` value: `rclone` for every kind but borg.
    pub fn copy(self) -> &'static str {
        match self {
            CopyKind::Borg => "borg",
            _ => "rclone",
        }
    }

    /// The `type =` of the rclone section (what the guard's hello shows); `None` for borg.
    pub fn rclone_type(self) -> Option<&'static str> {
        match self {
            CopyKind::Sftp => Some("sftp"),
            CopyKind::Webdav => Some("webdav"),
            CopyKind::S3 => Some("s3"),
            CopyKind::Borg => None,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            CopyKind::Sftp => "copy-sftp",
            CopyKind::Webdav => "copy-webdav",
            CopyKind::Borg => "copy-borg",
            CopyKind::S3 => "copy-s3",
        }
    }
}

/// A running second place, and what the remote was given to reach it. Its container goes with
/// the [`Env`]; the S3 server's processes when it is dropped.
pub struct CopyTarget {
    pub kind: CopyKind,
    /// The container serving it (removed with the [`Env`]); `None` for S3, a host process.
    pub container: Option<String>,
    /// The guard.conf `copy_target`: `offsite:PATH` for rclone, `ssh://root@HOST/PATH` for borg.
    pub target: String,
    /// The guard.conf `copy_config` (the default path of the kind).
    pub config: String,
    /// Where the copy lies inside [`CopyTarget::container`], to look at it from there.
    pub path: Option<String>,
    /// The client-side files written on the remote, path and content (each mode 600): what the
    /// owner keeps to reach the copy from a new remote ([`Env::install_copy_config`]).
    pub files: Vec<(String, String)>,
    /// Values the guard's diagnostics must redact (host, url, endpoint, user, key file) or must
    /// never have (passwords, in the clear and obscured; the S3 secret key).
    pub secrets: Vec<String>,
    s3: Option<S3Server>,
}

/// moto on the loopback and the socat that makes it reachable from the test's network.
struct S3Server {
    moto: Child,
    /// The socat, in its own process group (it forks one child per connection).
    front: Mutex<Option<Child>>,
    gateway: String,
    port: u16,
    moto_port: u16,
    log: tempfile::NamedTempFile,
}

impl S3Server {
    /// Starts moto on a free loopback port, and its front on a free port of `gateway`.
    fn start(gateway: &str) -> S3Server {
        let moto_port = free_port("127.0.0.1");
        let log = tempfile::NamedTempFile::new().unwrap();
        assert!(
            Path::new(MOTO_SERVER).exists(),
            "{MOTO_SERVER} is missing: run scripts/provision.sh --tests, which installs it"
        );
        let moto = Command::new(MOTO_SERVER)
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .die_with_test()
            .spawn()
            .expect("moto_server runs");
        let mut server = S3Server {
            moto,
            front: Mutex::new(None),
            gateway: gateway.to_string(),
            port: free_port(gateway),
            moto_port,
            log,
        };
        wait_until("moto's S3 server", Duration::from_secs(30), || {
            if let Ok(Some(status)) = server.moto.try_wait() {
                panic!(
                    "moto_server exited ({status}): {}",
                    std::fs::read_to_string(server.log.path()).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", moto_port)).is_ok()
        });
        server.open();
        server
    }

    /// `http://GATEWAY:PORT`, the endpoint the remote uses.
    fn endpoint(&self) -> String {
        format!("http://{}:{}", self.gateway, self.port)
    }

    /// Starts the front (again, on the same port).
    fn open(&self) {
        let mut front = self.front.lock().unwrap();
        if front.is_some() {
            return;
        }
        let child = Command::new("socat")
            .arg(format!(
                "TCP-LISTEN:{},bind={},reuseaddr,fork",
                self.port, self.gateway
            ))
            .arg(format!("TCP:127.0.0.1:{}", self.moto_port))
            .stdin(Stdio::null())
            .process_group(0)
            .die_with_test()
            .spawn()
            .expect("socat runs (scripts/provision.sh installs it)");
        *front = Some(child);
        drop(front);
        wait_until("the S3 server's front", Duration::from_secs(10), || {
            TcpStream::connect((self.gateway.as_str(), self.port)).is_ok()
        });
    }

    /// Stops the front and its connections: the server refuses connections, its content stays.
    fn cut(&self) {
        if let Some(mut child) = self.front.lock().unwrap().take() {
            // SAFETY: kill(2) on the process group this socat leads.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.cut();
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

/// Children that die with the test's thread: Drop does not run when the test process is killed
/// outright (a timeout in CI), and an orphan server would hold its port on.
trait DieWithTest {
    fn die_with_test(&mut self) -> &mut Self;
}

impl DieWithTest for Command {
    fn die_with_test(&mut self) -> &mut Self {
        // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
        unsafe {
            self.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            })
        }
    }
}

/// A port free on `address` now (the server binds it right after).
fn free_port(address: &str) -> u16 {
    TcpListener::bind((address, 0))
        .unwrap_or_else(|e| panic!("cannot bind {address}: {e}"))
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `content` to `path` in a container, mode 600.
fn put_file(container: &str, path: &str, content: &str) {
    let mut child = Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c"])
        .arg(format!("umask 077 && cat > '{path}' && chmod 600 '{path}'"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker CLI runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cannot write {path} in {container}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until something listens on `port` inside a container of the remote image (it has bash).
fn wait_port(container: &str, port: u16, what: &str) {
    let probe = format!("bash -c '</dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo yes || true");
    wait_until(what, Duration::from_secs(30), || {
        docker_output(&["exec", container, "sh", "-c", &probe])
            .stdout
            .starts_with(b"yes")
    });
}

impl Env {
    /// Stands up a second place of `kind`, gives the remote what it needs to reach it, and
    /// configures the remote's guard to copy there ([`Env::configure_copy`]).
    pub fn copy_target(&self, remote: &Remote, kind: CopyKind) -> CopyTarget {
        let target = self.copy_target_unconfigured(remote, kind);
        self.configure_copy(remote, &target);
        target
    }

    /// [`Env::copy_target`] without the guard.conf lines: the place is up and the remote can
    /// reach it, but its guard has no copy configured.
    pub fn copy_target_unconfigured(&self, remote: &Remote, kind: CopyKind) -> CopyTarget {
        let target = match kind {
            CopyKind::Sftp => self.sftp_target(remote),
            CopyKind::Webdav => self.webdav_target(remote),
            CopyKind::Borg => self.borg_target(remote),
            CopyKind::S3 => self.s3_target(remote),
        };
        self.install_copy_config(&target, remote);
        if kind == CopyKind::S3 {
            // moto starts with no bucket; creating it is also the check that the remote reaches
            // the host (a firewall may drop traffic from the bridge to the host).
            let bucket = format!("{RCLONE_REMOTE}:{S3_BUCKET}");
            let out = self.rclone_output(remote, &["mkdir", &bucket]);
            assert!(
                out.status.success(),
                "the remote cannot create the bucket at {} (does a firewall drop traffic from \
                 the test network to the host?): {}",
                target.s3.as_ref().unwrap().endpoint(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if kind == CopyKind::Webdav {
            // The server answers, and the remote's config (url, user, obscured pass) is right.
            let root = format!("{RCLONE_REMOTE}:");
            self.rclone(remote, &["lsjson", &root]);
        }
        target
    }

    /// Writes the `copy` lines into the remote's guard.conf (replacing earlier ones):
    /// `copy`, `copy_target`, and `copy_config` when it is not the kind's default.
    pub fn configure_copy(&self, remote: &Remote, t: &CopyTarget) {
        let default = match t.kind {
            CopyKind::Borg => COPY_SSH_CONFIG,
            _ => RCLONE_CONF,
        };
        let mut lines = format!("copy = {}\ncopy_target = {}\n", t.kind.copy(), t.target);
        if t.config != default {
            lines.push_str(&format!("copy_config = {}\n", t.config));
        }
        let script = format!(
            "sed -i -E '/^[[:space:]]*copy(_target|_config|_passphrase_file)?[[:space:]]*=/d' \
             {GUARD_CONF} && cat >> {GUARD_CONF}"
        );
        let mut child = Command::new("docker")
            .args(["exec", "-i", &remote.name, "sh", "-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .expect("docker CLI runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "cannot write {GUARD_CONF}");
    }

    /// Writes the client-side files of `t` ([`CopyTarget::files`]) on a remote, mode 600: the
    /// owner giving a new remote what reached the copy.
    pub fn install_copy_config(&self, t: &CopyTarget, remote: &Remote) {
        for (path, content) in &t.files {
            put_file(&remote.name, path, content);
        }
    }

    /// The remote's key for the ssh targets (made once, on the remote); returns its public half.
    fn copy_key(&self, remote: &Remote) -> String {
        self.on_remote(
            remote,
            &format!(
                "test -s {COPY_KEY} || ssh-keygen -q -t ed25519 -N '' -C backup-copy -f {COPY_KEY}; \
                 chmod 600 {COPY_KEY}; cat {COPY_KEY}.pub"
            ),
        )
        .trim()
        .to_string()
    }

    /// An OpenSSH server of the remote image with root login for the remote's copy key; returns
    /// the container and the files that reach it from the remote (its key and pinned host key).
    fn ssh_target(&self, remote: &Remote, kind: CopyKind) -> (String, Vec<(String, String)>) {
        let authorized = format!("AUTHORIZED_KEYS={}", self.copy_key(remote));
        let name = self.container(
            kind.suffix(),
            &[
                "--network",
                &self.network,
                "-e",
                "GUARD=off",
                "-e",
                &authorized,
            ],
            REMOTE_IMAGE,
            &[],
        );
        wait_port(&name, 22, "the copy target's sshd");
        let host_key = docker(&[
            "exec",
            &name,
            "cat",
            "/etc/ssh/keys/ssh_host_ed25519_key.pub",
        ]);
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        let known = format!("{name} {}\n", key.join(" "));
        let files = vec![
            (
                COPY_KEY.into(),
                self.on_remote(remote, &format!("cat {COPY_KEY}")),
            ),
            (COPY_KNOWN_HOSTS.into(), known),
        ];
        (name, files)
    }

    /// Sftp: rclone's sftp backend to an OpenSSH server, key login, host key pinned. The shell
    /// type and hash commands are set: rclone 1.60 otherwise probes them on first use and writes
    /// them into the config file.
    fn sftp_target(&self, remote: &Remote) -> CopyTarget {
        let (name, mut files) = self.ssh_target(remote, CopyKind::Sftp);
        let conf = format!(
            "[{RCLONE_REMOTE}]\ntype = sftp\nhost = {name}\nuser = root\nkey_file = {COPY_KEY}\n\
             known_hosts_file = {COPY_KNOWN_HOSTS}\nshell_type = unix\nmd5sum_command = md5sum\n\
             sha1sum_command = sha1sum\n"
        );
        CopyTarget {
            kind: CopyKind::Sftp,
            target: format!("{RCLONE_REMOTE}:{SFTP_COPY_PATH}"),
            config: RCLONE_CONF.into(),
            path: Some(SFTP_COPY_PATH.into()),
            files: {
                files.push((RCLONE_CONF.into(), conf));
                files
            },
            secrets: vec![name.clone(), COPY_KEY.into()],
            container: Some(name),
            s3: None,
        }
    }

    /// Webdav: `rclone serve webdav` with a user and password.
    fn webdav_target(&self, remote: &Remote) -> CopyTarget {
        let serve = format!(
            "mkdir -p {WEBDAV_ROOT} && exec rclone serve webdav {WEBDAV_ROOT} --addr :{WEBDAV_PORT} \
             --user {WEBDAV_USER} --pass {WEBDAV_PASS}"
        );
        let name = self.container(
            CopyKind::Webdav.suffix(),
            &["--network", &self.network, "--init", "--entrypoint", "sh"],
            REMOTE_IMAGE,
            &["-c", &serve],
        );
        wait_port(&name, WEBDAV_PORT, "the webdav server");
        let obscured = docker(&["exec", &remote.name, "rclone", "obscure", WEBDAV_PASS])
            .trim()
            .to_string();
        let url = format!("http://{name}:{WEBDAV_PORT}/");
        let conf = format!(
            "[{RCLONE_REMOTE}]\ntype = webdav\nurl = {url}\nvendor = other\nuser = {WEBDAV_USER}\n\
             pass = {obscured}\n"
        );
        CopyTarget {
            kind: CopyKind::Webdav,
            target: format!("{RCLONE_REMOTE}:backup/borg"),
            config: RCLONE_CONF.into(),
            path: Some(format!("{WEBDAV_ROOT}/backup/borg")),
            files: vec![(RCLONE_CONF.into(), conf)],
            secrets: vec![
                name.clone(),
                url,
                WEBDAV_USER.into(),
                WEBDAV_PASS.into(),
                obscured,
            ],
            container: Some(name),
            s3: None,
        }
    }

    /// Borg: a second repository over ssh, reached through its own ssh client config.
    fn borg_target(&self, remote: &Remote) -> CopyTarget {
        let (name, mut files) = self.ssh_target(remote, CopyKind::Borg);
        let ssh_config = format!(
            "Host {name}\n  User root\n  IdentityFile {COPY_KEY}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {COPY_KNOWN_HOSTS}\n  StrictHostKeyChecking yes\n"
        );
        CopyTarget {
            kind: CopyKind::Borg,
            target: format!("ssh://root@{name}{BORG_COPY_PATH}"),
            config: COPY_SSH_CONFIG.into(),
            path: Some(BORG_COPY_PATH.into()),
            files: {
                files.push((COPY_SSH_CONFIG.into(), ssh_config));
                files.push((COPY_PASSPHRASE_FILE.into(), format!("{COPY_PASSPHRASE}\n")));
                files
            },
            secrets: vec![name.clone()],
            container: Some(name),
            s3: None,
        }
    }

    /// S3: moto's server on the host, reached at the gateway of the test's network.
    fn s3_target(&self, _remote: &Remote) -> CopyTarget {
        let gateway = docker(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            &self.network,
        ])
        .trim()
        .to_string();
        assert!(!gateway.is_empty(), "{} has no gateway", self.network);
        let server = S3Server::start(&gateway);
        let endpoint = server.endpoint();
        let conf = format!(
            "[{RCLONE_REMOTE}]\ntype = s3\nprovider = Other\nendpoint = {endpoint}\n\
             access_key_id = {S3_ACCESS_KEY}\nsecret_access_key = {S3_SECRET_KEY}\n\
             force_path_style = true\n"
        );
        CopyTarget {
            kind: CopyKind::S3,
            container: None,
            target: format!("{RCLONE_REMOTE}:{S3_BUCKET}/borg"),
            config: RCLONE_CONF.into(),
            path: None,
            files: vec![(RCLONE_CONF.into(), conf)],
            secrets: vec![endpoint, S3_SECRET_KEY.into()],
            s3: Some(server),
        }
    }

    /// Runs rclone with the remote's rclone config; returns its output whatever the status.
    pub fn rclone_output(&self, remote: &Remote, args: &[&str]) -> std::process::Output {
        let mut argv = vec!["exec", &remote.name, "rclone", "--config", RCLONE_CONF];
        argv.extend(args);
        docker_output(&argv)
    }

    /// Runs rclone with the remote's rclone config; returns stdout, panics on failure.
    pub fn rclone(&self, remote: &Remote, args: &[&str]) -> String {
        let out = self.rclone_output(remote, args);
        assert!(
            out.status.success(),
            "rclone {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The files of the copy, path (relative to the target) and size, sorted; empty when there
    /// is no copy yet. rclone kinds: `rclone lsjson` of the target from the remote; borg: the
    /// repository's files in the target's container.
    pub fn copy_files(&self, t: &CopyTarget, remote: &Remote) -> Vec<(String, u64)> {
        match t.kind {
            CopyKind::Borg => {
                let container = t.container.as_deref().unwrap();
                let path = t.path.as_deref().unwrap();
                let script = format!("test ! -d {path} || find {path} -type f -printf '%s %P\\n'");
                let mut files: Vec<(String, u64)> =
                    docker(&["exec", container, "sh", "-c", &script])
                        .lines()
                        .map(|line| {
                            let (size, path) = line.split_once(' ').unwrap();
                            (path.to_string(), size.parse().unwrap())
                        })
                        .collect();
                files.sort();
                files
            }
            _ => self.rclone_files(remote, &t.target),
        }
    }

    /// The files moved aside by the rclone copy's `--backup-dir` (below `TARGET.deleted/`),
    /// path (starting with the run's time directory) and size, sorted.
    pub fn copy_deleted_files(&self, t: &CopyTarget, remote: &Remote) -> Vec<(String, u64)> {
        assert_ne!(t.kind, CopyKind::Borg, "a borg copy moves nothing aside");
        self.rclone_files(remote, &format!("{}.deleted", t.target))
    }

    /// `rclone lsjson -R --files-only` of an rclone path; empty when the directory is missing.
    fn rclone_files(&self, remote: &Remote, location: &str) -> Vec<(String, u64)> {
        let out = self.rclone_output(remote, &["lsjson", "-R", "--files-only", location]);
        // 3: directory not found.
        if out.status.code() == Some(3) {
            return Vec::new();
        }
        assert!(
            out.status.success(),
            "rclone lsjson {location} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut files: Vec<(String, u64)> = listing
            .iter()
            .map(|f| {
                (
                    f["Path"].as_str().unwrap().to_string(),
                    f["Size"].as_u64().unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    /// Makes the second place unreachable, its content kept: stops its container (its name then
    /// no longer resolves on the network: the remote's rclone, ssh and borg fail within a
    /// second), or closes the S3 server's port (connections refused).
    pub fn stop_copy_target(&self, t: &CopyTarget) {
        match (&t.container, &t.s3) {
            (Some(container), _) => {
                docker(&["stop", "-t", "2", container]);
            }
            (None, Some(server)) => server.cut(),
            _ => unreachable!(),
        }
    }

    /// Brings the second place back after [`Env::stop_copy_target`], and waits until it serves.
    pub fn start_copy_target(&self, t: &CopyTarget) {
        match (&t.container, &t.s3) {
            (Some(container), _) => {
                docker(&["start", container]);
                let (port, what) = match t.kind {
                    CopyKind::Webdav => (WEBDAV_PORT, "the webdav server"),
                    _ => (22, "the copy target's sshd"),
                };
                wait_port(container, port, what);
            }
            (None, Some(server)) => server.open(),
            _ => unreachable!(),
        }
    }

    /// The restore when the remote is gone: gives `new_remote` the first remote's copy config
    /// and runs `rclone copy TARGET PATH` there. rclone kinds only.
    pub fn fetch_copy_to(&self, t: &CopyTarget, new_remote: &Remote, path: &str) {
        assert_ne!(
            t.kind,
            CopyKind::Borg,
            "fetch_copy_to is for the rclone kinds"
        );
        self.install_copy_config(t, new_remote);
        self.rclone(new_remote, &["copy", &t.target, path]);
    }

    /// Runs borg on the remote against the borg kind's second place: its ssh config as
    /// `BORG_RSH` (as the guard sets it) and its passphrase; returns stdout.
    pub fn copy_borg(&self, t: &CopyTarget, remote: &Remote, args: &[&str]) -> String {
        assert_eq!(t.kind, CopyKind::Borg, "copy_borg is for the borg kind");
        let rsh = format!("BORG_RSH=ssh -F {} -o BatchMode=yes", t.config);
        let passphrase = format!("BORG_PASSPHRASE={COPY_PASSPHRASE}");
        let mut argv = vec!["exec", "-e", &rsh, "-e", &passphrase, &remote.name, "borg"];
        argv.extend(args);
        docker(&argv)
    }

    /// Creates the second repository (`borg init -e repokey`), as the guard's `--setup` does.
    pub fn init_borg_copy(&self, t: &CopyTarget, remote: &Remote) {
        self.copy_borg(t, remote, &["init", "-e", "repokey", &t.target]);
    }

    /// The archives of the second repository.
    pub fn copy_archives(&self, t: &CopyTarget, remote: &Remote) -> Vec<String> {
        self.copy_borg(t, remote, &["list", "--short", &t.target])
            .lines()
            .map(String::from)
            .collect()
    }
}
