//! Which host a mirror directory belongs to. The first host to mirror into `BACKUP_REMOTE_DIR`
//! writes its name into [`MARKER`] there; a host with another name configured into the same
//! directory is refused before it changes anything, since its snapshots would hold the other
//! host's volumes as its own. Read and written with rsync, which a guarded remote serves too.

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::remote::commands;
use crate::remote::fault::{Fault, RemoteError, classify};
use crate::remote::process::{self, Cmd};
use crate::remote::ssh::Ssh;

/// The marker's name, at the top of a host's mirror directory.
pub const MARKER: &str = ".backup-sidecar-host";

/// Checks that `dir` is `host`'s mirror, or claims it when nobody has. A missing `dir` is made
/// only when `make` (the `{host}` of a per-host layout, whose parent exists); otherwise it is the
/// `remote_dir_missing` fault, as before (an unmounted disk must not be written to).
pub async fn claim(
    ssh: &Ssh,
    dir: &str,
    host: &str,
    make: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let local = scratch.path().join(MARKER);
    let pull = commands::rsync_pull(
        ssh,
        &format!("{dir}/{MARKER}"),
        &local.display().to_string(),
        &[],
    );
    let done = process::run(&pull, cancel).await?;
    if done.success() {
        let owner = std::fs::read_to_string(&local)?;
        let owner = owner.trim();
        if owner == host {
            return Ok(());
        }
        return Err(RemoteError {
            fault: Fault::MirrorTaken,
            message: format!(
                "BACKUP_REMOTE_DIR {dir} is the mirror of host {owner}, and this host is \
                 {host}: give each host its own directory (BACKUP_REMOTE_DIR=.../{{host}}); if \
                 {owner} is gone and this host takes its place, remove {dir}/{MARKER} on the remote"
            ),
        }
        .into());
    }
    if !done.stderr.contains("No such file or directory") {
        return Err(classify("rsync", done.code, &done.stderr).into());
    }
    if !make {
        let exists = ssh
            .run(&commands::is_directory(ssh.dialect(), dir), None, cancel)
            .await?;
        if !exists.success() {
            return Err(RemoteError {
                fault: Fault::RemoteDirMissing,
                message: format!(
                    "BACKUP_REMOTE_DIR {dir} does not exist on the remote (is its disk mounted?)"
                ),
            }
            .into());
        }
    }
    std::fs::write(&local, format!("{host}\n"))?;
    let push = Cmd::new("rsync")
        .arg("-e")
        .arg(ssh.rsh())
        .arg(&local)
        .arg(ssh.rsync_target(&format!("{dir}/")));
    let done = process::run(&push, cancel).await?;
    if !done.success() {
        return Err(classify("rsync", done.code, &done.stderr).into());
    }
    tracing::info!(dir, host, "claimed the mirror directory for this host");
    Ok(())
}
