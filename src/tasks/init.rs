//! `backup-sidecar init`: prepares the remote once, with a key that still has a normal login
//! there, and ends by narrowing that key to the guard, after which it cannot undo any of it.
//!
//! 1. Pins the remote's host key from the fingerprint the user passes (`--host-key SHA256:...`),
//!    never by trusting the first key seen.
//! 2. Reads what is on the remote and prints what it will change; without `--yes` it stops there.
//! 3. Installs the guard, its rsync module and its configuration (the mirror directory, the
//!    repository, the retention and the pre/post commands from this sidecar's settings), runs
//!    `guard --setup` (mirror directory, reader user, append-only repository), prints the
//!    repository key export, and replaces the key's `authorized_keys` line with the restricted one.
//!
//! Run again, it changes only what differs; against a guarded remote it only says so.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Keep};
use crate::remote::guard::{
    GUARD_CONFIG, GUARD_PATH, GUARD_SOURCE, Guard, RSYNCD_CONF, RSYNCD_PATH,
};
use crate::remote::install;
use crate::remote::process::{self, Cmd};
use crate::remote::ssh::{Session, Ssh};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// The remote's host key fingerprint, `SHA256:...` as `ssh-keygen -l` prints it.
    pub host_key: String,
    /// Apply; without it, only show.
    pub yes: bool,
    /// The second copy to write into the guard's configuration: its kind (`rclone` or `borg`) and
    /// target (an rclone `NAME:PATH`, or `ssh://USER@HOST/PATH`). Its credentials are the
    /// owner's to put on the remote; they never pass through here.
    pub copy: Option<(String, String)>,
}

/// `backup-sidecar init`.
pub async fn init(
    config: &Config,
    request: &InitRequest,
    cancel: &CancellationToken,
) -> Result<()> {
    if !request.host_key.starts_with("SHA256:") {
        bail!("--host-key must be a SHA256 fingerprint (SHA256:...), as ssh-keygen -l prints it");
    }
    let line = host_key_line(config, &request.host_key, cancel).await?;
    println!(
        "host key {} of {} matches",
        request.host_key, config.remote.host
    );
    let pinned = pinned_already(config, &line);
    if !pinned {
        println!(
            "change: pin it in BACKUP_KNOWN_HOSTS_FILE ({})",
            config.known_hosts_file.display()
        );
    }
    // Until --yes, the session trusts the checked key through a file of its own.
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut session_config = config.clone();
    session_config.known_hosts_file = scratch.path().join("known_hosts");
    std::fs::write(&session_config.known_hosts_file, format!("{line}\n"))?;
    let session = Session::open(&session_config, cancel).await?;
    let result = prepare(config, &session.ssh, request, pinned, &line, cancel).await;
    session.close().await;
    let restricted = result?;
    if !restricted {
        return Ok(());
    }
    // The key is narrowed now: a fresh connection must meet the guard.
    let session = Session::open(&session_config, cancel).await?;
    let guard = session.ssh.guard().cloned();
    session.close().await;
    match guard {
        Some(guard) => {
            println!(
                "done: the key now runs only the guard's vocabulary (guard {}, mirror {})",
                guard.guard, guard.mirror
            );
            Ok(())
        }
        None => bail!(
            "the authorized_keys line was replaced, but the remote still gives this key a shell: \
             is another line or another AuthorizedKeysFile authorizing it?"
        ),
    }
}

/// The remote's host key line (as `ssh-keyscan` prints it) whose fingerprint is `fingerprint`.
async fn host_key_line(
    config: &Config,
    fingerprint: &str,
    cancel: &CancellationToken,
) -> Result<String> {
    let scan = Cmd::new("ssh-keyscan")
        .args(["-T", "10", "-p"])
        .arg(config.remote.port.to_string())
        .arg(&config.remote.host);
    let scanned = process::run(&scan, cancel).await?;
    let lines: Vec<&str> = scanned
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#') && l.split_whitespace().count() >= 3)
        .collect();
    if lines.is_empty() {
        bail!(
            "the remote {}:{} presented no host key ({})",
            config.remote.host,
            config.remote.port,
            scanned.last_error_line()
        );
    }
    let mut seen = Vec::new();
    for line in lines {
        let blob = line.split_whitespace().nth(2).unwrap_or_default();
        let print = fingerprint_of(blob)?;
        if print == fingerprint {
            return Ok(line.to_string());
        }
        seen.push(print);
    }
    bail!(
        "the remote presented {}; none is --host-key {fingerprint}: nothing was changed",
        seen.join(", ")
    )
}

/// `SHA256:...` of a base64 public key blob, as `ssh-keygen -l` prints it.
fn fingerprint_of(blob: &str) -> Result<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .context("the remote's host key is not base64")?;
    let digest = Sha256::digest(&raw);
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// Whether known_hosts already holds exactly this key for this host.
fn pinned_already(config: &Config, line: &str) -> bool {
    std::fs::read_to_string(&config.known_hosts_file)
        .map(|text| text.lines().any(|l| l.trim() == line.trim()))
        .unwrap_or(false)
}

/// Writes known_hosts: the host's other lines go, the checked one stays.
fn pin(config: &Config, line: &str) -> Result<()> {
    let host = line.split_whitespace().next().unwrap_or_default();
    let old = std::fs::read_to_string(&config.known_hosts_file).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(host))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(line.trim());
    text.push('\n');
    std::fs::write(&config.known_hosts_file, text).with_context(|| {
        format!(
            "cannot write BACKUP_KNOWN_HOSTS_FILE {} (mount it writable for init)",
            config.known_hosts_file.display()
        )
    })
}

/// The files `init` installs, with their contents.
struct Files {
    config: String,
}

impl Files {
    fn new(config: &Config, copy: Option<&(String, String)>) -> Result<Files> {
        Ok(Files {
            config: guard_config(config, copy)?,
        })
    }

    /// Path, content and mode of each file.
    fn each(&self) -> [(&'static str, &str, &'static str); 3] {
        [
            (GUARD_PATH, GUARD_SOURCE, "755"),
            (RSYNCD_PATH, RSYNCD_CONF, "644"),
            (GUARD_CONFIG, &self.config, "600"),
        ]
    }
}

/// The guard's configuration from this sidecar's settings (and the second copy the owner asked
/// for): from now on they live on the remote.
fn guard_config(config: &Config, copy: Option<&(String, String)>) -> Result<String> {
    let keep = config.borg.as_ref().map(|b| b.keep).unwrap_or(Keep {
        daily: 7,
        weekly: 4,
        monthly: 6,
    });
    let mut text = String::from(
        "# backup-sidecar's guard (written by backup-sidecar init). The sidecar's key can only\n\
         # run what this file and the guard allow; edit it here, on the remote.\n",
    );
    let mirror = config.mirror_root.trim_end_matches('/');
    let mirror = if mirror.is_empty() { "/" } else { mirror };
    for (key, value) in [
        ("mirror", mirror),
        (
            "repository",
            config.borg.as_ref().map(|b| b.repo.as_str()).unwrap_or(""),
        ),
        ("pre_command", config.pre_command.as_deref().unwrap_or("")),
        ("post_command", config.post_command.as_deref().unwrap_or("")),
    ] {
        if value.contains('\n') {
            bail!("{key} for the guard must be one line");
        }
        writeln!(text, "{key} = {value}")?;
    }
    writeln!(text, "keep_daily = {}", keep.daily)?;
    writeln!(text, "keep_weekly = {}", keep.weekly)?;
    writeln!(text, "keep_monthly = {}", keep.monthly)?;
    if let Some((kind, target)) = copy {
        if !matches!(kind.as_str(), "rclone" | "borg") {
            bail!("--copy must be rclone or borg, not {kind:?}");
        }
        if target.is_empty() || target.chars().any(char::is_control) {
            bail!("--copy-target must be one line, such as offsite:backup/borg");
        }
        writeln!(
            text,
            "# The second copy: its credentials go in the file copy_config names (README: A \
             second copy).\ncopy = {kind}\ncopy_target = {target}"
        )?;
    }
    Ok(text)
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the remote holds now, from [`probe_script`].
#[derive(Debug, Default)]
struct State {
    values: Vec<(String, String)>,
}

impl State {
    fn parse(text: &str) -> State {
        State {
            values: text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn get(&self, key: &str) -> &str {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// Shows the plan and, with `--yes`, applies it. Returns whether the key was narrowed.
async fn prepare(
    config: &Config,
    ssh: &Ssh,
    request: &InitRequest,
    pinned: bool,
    host_line: &str,
    cancel: &CancellationToken,
) -> Result<bool> {
    if let Some(guard) = ssh.guard() {
        already_guarded(guard);
        if request.yes && !pinned {
            pin(config, host_line)?;
            println!("pinned the host key");
        }
        return Ok(false);
    }
    let files = Files::new(config, request.copy.as_ref())?;
    let public = public_key(config, cancel).await?;
    let blob = public
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("cannot read the public key of BACKUP_SSH_KEY_FILE"))?
        .to_string();
    let paths: Vec<&str> = files.each().iter().map(|(path, _, _)| *path).collect();
    let script = install::probe_script(
        &paths,
        &config.mirror_root,
        config.borg.as_ref().map(|b| b.repo.as_str()),
        &blob,
    );
    let probe = ssh.run(&script, None, cancel).await?;
    if !probe.success() {
        bail!(
            "cannot read the remote's state: {}",
            probe.last_error_line()
        );
    }
    let state = State::parse(&probe.stdout);
    let missing: Vec<&str> = ["python3", "rsync", "borg", "setpriv"]
        .into_iter()
        .filter(|p| state.get(&format!("have_{p}")) != "yes")
        .filter(|p| *p != "borg" || config.borg.is_some())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the remote lacks {} (Debian: apt install python3 rsync borgbackup util-linux)",
            missing.join(", ")
        );
    }
    let changes = plan(config, &files, &state)?;
    for change in &changes {
        println!("change: {change}");
    }
    if !request.yes {
        println!(
            "nothing changed yet: run again with --yes to apply (the key's last step narrows \
             it to the guard; it cannot undo that)"
        );
        return Ok(false);
    }
    if !pinned {
        pin(config, host_line)?;
        println!("pinned the host key");
    }
    install(ssh, &files, &state, cancel).await?;
    setup(config, ssh, cancel).await?;
    if config.borg.is_some() {
        export_key(config, ssh, cancel).await?;
    }
    restrict(ssh, &blob, cancel).await?;
    Ok(true)
}

fn already_guarded(guard: &Guard) {
    println!(
        "the remote is guarded already (guard {}, mirror {}{}): nothing to change through this \
         key; change the guard's settings in {GUARD_CONFIG} on the remote",
        guard.guard,
        guard.mirror,
        guard
            .repository
            .as_ref()
            .map(|r| format!(", repository {r}"))
            .unwrap_or_default()
    );
}

/// The changes, one line each.
fn plan(config: &Config, files: &Files, state: &State) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    for (path, content, _) in files.each() {
        match state.get(path) {
            "none" => changes.push(format!("install {path}")),
            sum if sum != sha256(content) => changes.push(format!("replace {path}")),
            _ => {}
        }
    }
    if state.get("mirror") != "yes" {
        changes.push(format!(
            "create the mirror directory {}",
            config.mirror_root
        ));
    }
    changes.push("create the reader user backup-sidecar-reader (if missing)".into());
    if let Some(borg) = &config.borg {
        if state.get("repository") != "yes" {
            if borg.passphrase.is_none() {
                bail!(
                    "BACKUP_BORG_PASSPHRASE is not set: init creates an encrypted repository \
                     (repokey) at {}",
                    borg.repo
                );
            }
            changes.push(format!(
                "create the repository {} (borg init -e repokey, append-only) and print its key",
                borg.repo
            ));
        } else if state.get("append_only") != "yes" {
            changes.push(format!("make the repository {} append-only", borg.repo));
        }
        changes.push(format!(
            "let the reader read the repository {} (group, umask 0027)",
            borg.repo
        ));
    }
    match state.get("key") {
        "open" => changes.push(format!(
            "restrict this key in ~/.ssh/authorized_keys: restrict,command=\"{GUARD_PATH}\""
        )),
        "restricted" => bail!(
            "this key's authorized_keys line has a command= already, but the guard does not \
             answer: fix that line on the remote by hand"
        ),
        _ => bail!(
            "this key is not in ~/.ssh/authorized_keys on the remote, so init cannot restrict \
             it: add it there first"
        ),
    }
    Ok(changes)
}

/// The public key of BACKUP_SSH_KEY_FILE (`TYPE BLOB [COMMENT]`).
async fn public_key(config: &Config, cancel: &CancellationToken) -> Result<String> {
    let pub_path = PathBuf::from(format!("{}.pub", config.ssh_key_file.display()));
    if let Ok(text) = std::fs::read_to_string(&pub_path) {
        return Ok(text.trim().to_string());
    }
    let derived = Cmd::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&config.ssh_key_file);
    let done = process::run(&derived, cancel).await?;
    if !done.success() {
        bail!(
            "cannot read the public key of BACKUP_SSH_KEY_FILE: {}",
            done.last_error_line()
        );
    }
    Ok(done.stdout.trim().to_string())
}

/// Installs the files that differ, each written to a temporary name and renamed.
async fn install(
    ssh: &Ssh,
    files: &Files,
    state: &State,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut changed = Vec::new();
    for (path, content, mode) in files.each() {
        if state.get(path) != sha256(content) {
            println!("installing {path}");
            changed.push((path, content, mode));
        }
    }
    let script = install::install_script(&changed);
    let done = ssh.run("sh -s", Some(script.into_bytes()), cancel).await?;
    if !done.success() {
        bail!("installing the guard failed: {}", done.last_error_line());
    }
    Ok(())
}

/// `guard --setup`, with the passphrase on stdin: mirror directory, reader, repository.
async fn setup(config: &Config, ssh: &Ssh, cancel: &CancellationToken) -> Result<()> {
    let passphrase = config
        .borg
        .as_ref()
        .and_then(|b| b.passphrase.as_ref())
        .map(|p| p.expose().as_bytes().to_vec());
    let done = ssh.run(&install::setup_line(), passphrase, cancel).await?;
    print!("{}", done.stdout);
    if !done.success() {
        bail!("guard --setup failed: {}", done.last_error_line());
    }
    Ok(())
}

/// Prints the repository key, to be kept offline: with the passphrase it opens the repository
/// even if the remote's copy of the key is lost.
async fn export_key(config: &Config, ssh: &Ssh, cancel: &CancellationToken) -> Result<()> {
    let Some(borg) = &config.borg else {
        return Ok(());
    };
    let done = ssh
        .run(&install::key_export_line(&borg.repo), None, cancel)
        .await?;
    if !done.success() {
        bail!("borg key export failed: {}", done.last_error_line());
    }
    println!(
        "---- the repository key ({}): print it or keep it offline, away from this host and the \
         remote; with the passphrase it opens the repository if the remote's copy is lost\n{}\
         ---- (borg key import --paper {} brings it back)",
        borg.repo, done.stdout, borg.repo
    );
    Ok(())
}

/// Replaces this key's authorized_keys line with the restricted one: the last step.
async fn restrict(ssh: &Ssh, blob: &str, cancel: &CancellationToken) -> Result<()> {
    let script = install::restrict_script(blob);
    let done = ssh.run("sh -s", Some(script.into_bytes()), cancel).await?;
    if !done.success() {
        bail!(
            "restricting the key in authorized_keys failed: {}",
            done.last_error_line()
        );
    }
    println!("restricted this key to {GUARD_PATH} in ~/.ssh/authorized_keys");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_as_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("ssh-keygen")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        run(&["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()]);
        let public = std::fs::read_to_string(dir.path().join("k.pub")).unwrap();
        let listed = run(&["-l", "-f", dir.path().join("k.pub").to_str().unwrap()]);
        let expected = listed.split_whitespace().nth(1).unwrap();
        let blob = public.split_whitespace().nth(1).unwrap();
        assert_eq!(fingerprint_of(blob).unwrap(), expected);
        assert!(fingerprint_of("not base64!").is_err());
    }

    #[test]
    fn guard_config_from_the_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let config = crate::config::Config::from_raw(crate::config::RawConfig {
            backup_remote: Some("root@pi".into()),
            backup_ssh_key_file: Some(key.display().to_string()),
            backup_known_hosts_file: Some("/dev/null".into()),
            backup_remote_dir: Some("/mnt/backup/mirror/".into()),
            backup_borg_repo: Some("/mnt/backup/borg".into()),
            backup_keep_weekly: Some("0".into()),
            backup_remote_pre_command: Some("mount /mnt/backup".into()),
            ..Default::default()
        })
        .unwrap();
        let text = guard_config(&config, None).unwrap();
        assert!(!text.contains("copy"));
        let copy = ("rclone".to_string(), "offsite:backup/borg".to_string());
        let with_copy = guard_config(&config, Some(&copy)).unwrap();
        assert!(with_copy.contains("\ncopy = rclone\ncopy_target = offsite:backup/borg\n"));
        let wrong = ("s3".to_string(), "x:y".to_string());
        assert!(guard_config(&config, Some(&wrong)).is_err());
        for line in [
            "mirror = /mnt/backup/mirror\n",
            "repository = /mnt/backup/borg\n",
            "pre_command = mount /mnt/backup\n",
            "post_command = \n",
            "keep_daily = 7\nkeep_weekly = 0\nkeep_monthly = 6\n",
        ] {
            assert!(text.contains(line), "{line:?} not in {text}");
        }
    }

    #[test]
    fn reads_the_probe() {
        let state = State::parse("have_borg=yes\n/etc/x=none\nkey=open\n");
        assert_eq!(state.get("have_borg"), "yes");
        assert_eq!(state.get("/etc/x"), "none");
        assert_eq!(state.get("missing"), "");
    }
}
