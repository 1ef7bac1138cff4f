//! The restore helper: a short-lived container from the sidecar's own image, sharing its network,
//! that mounts only the target volume and runs the restore's rsync or `borg extract`. The ssh key,
//! known_hosts and passphrase are copied into it (never on a command line or in its environment),
//! and it is removed afterwards, also on failure.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder, WaitContainerOptions,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::engine::discover;

/// Where the helper finds the ssh key, known_hosts and passphrase (copied in, never on a command
/// line or in its environment).
pub const SECRETS: &str = "/run/restore";

/// The command that prints the repository's passphrase in the helper (`BORG_PASSCOMMAND`): a
/// file among the secrets, present when the repository has a passphrase.
pub const PASSCOMMAND: &str = "cat /run/restore/passphrase";

/// Where the helper mounts the target volume: `RESTORE_ROOT/<the backed-up volume's name>`, the
/// path the volume's directory has in an archive, so that `borg extract` restores the volume's
/// own directory (its mode, owner, times to the nanosecond, xattrs and ACLs) onto the mount.
pub const RESTORE_ROOT: &str = "/restore";

/// The label of every helper (its value: the target).
const HELPER_LABEL: &str = "backup-sidecar.restore-helper";

/// Removes the helpers this sidecar's container left behind: a restore killed outright (with the
/// container, say) cannot remove its own, which then holds the target volume (a second restore to
/// it is refused as "in use") and its borg on the remote. They are the helpers that share this
/// container's network; call it holding the run lock, when no restore of ours runs. Returns the
/// names removed.
pub async fn remove_left(docker: &Docker) -> Vec<String> {
    let Some(own) = discover::own_container_id() else {
        return Vec::new();
    };
    let filters = HashMap::from([("label", vec![HELPER_LABEL])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(helpers) = docker.list_containers(Some(options)).await else {
        return Vec::new();
    };
    let ours = format!("container:{own}");
    let mut removed = Vec::new();
    for helper in helpers {
        let network = helper.host_config.and_then(|h| h.network_mode);
        let (Some(id), true) = (helper.id, network.as_deref() == Some(ours.as_str())) else {
            continue;
        };
        let force = RemoveContainerOptionsBuilder::new().force(true).build();
        if docker.remove_container(&id, Some(force)).await.is_ok() {
            let name = helper.names.and_then(|n| n.into_iter().next());
            removed.push(name.map_or(id, |n| n.trim_start_matches('/').to_string()));
        }
    }
    removed
}

/// The helper: the sidecar's own image, its network, the target (a volume or a host directory,
/// which the engine creates when missing) at `RESTORE_ROOT/<source>`.
pub struct Helper<'a> {
    docker: &'a Docker,
    id: String,
}

impl<'a> Helper<'a> {
    /// Creates (does not start) the helper for `target` (a volume's name or an absolute host
    /// path), mounted as the source it is restored from, running `script` with `args`. A host
    /// path that does not exist is created by the engine, unless `look_only` (a dry run), when
    /// it is an error.
    pub async fn create(
        docker: &'a Docker,
        target: &str,
        source: &str,
        (script, args): (&str, Vec<String>),
        look_only: bool,
    ) -> Result<Helper<'a>> {
        let own = discover::own_container_id().ok_or_else(|| {
            anyhow!(
                "restore runs inside the sidecar container: \
                 docker exec backup-sidecar backup-sidecar restore ..."
            )
        })?;
        let me = docker
            .inspect_container(&own, None)
            .await
            .context("cannot inspect the sidecar's own container")?;
        let image = me
            .image
            .ok_or_else(|| anyhow!("the sidecar's image is unknown"))?;
        let mut cmd = vec![script.to_string(), "restore-helper".to_string()];
        cmd.extend(args);
        let body = ContainerCreateBody {
            image: Some(image),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            // The image's health check is the daemon's: it means nothing in a helper.
            healthcheck: Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            cmd: Some(cmd),
            labels: Some(HashMap::from([(
                HELPER_LABEL.to_string(),
                target.to_string(),
            )])),
            host_config: Some(HostConfig {
                binds: (!look_only || !target.starts_with('/'))
                    .then(|| vec![format!("{target}:{RESTORE_ROOT}/{source}")]),
                mounts: (look_only && target.starts_with('/')).then(|| {
                    vec![Mount {
                        typ: Some(MountType::BIND),
                        source: Some(target.to_string()),
                        target: Some(format!("{RESTORE_ROOT}/{source}")),
                        ..Default::default()
                    }]
                }),
                network_mode: Some(format!("container:{own}")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name: String = format!("backup-sidecar-restore-{source}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        // A helper left by a killed restore holds nothing of value: replace it.
        let _ = docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .context("cannot create the restore helper container")?;
        Ok(Helper {
            docker,
            id: created.id,
        })
    }

    /// Copies the ssh key, known_hosts and passphrase into the helper (mode 0600).
    pub async fn upload_secrets(&self, config: &Config) -> Result<()> {
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            (
                "id_ed25519",
                std::fs::read(&config.ssh_key_file).context("cannot read BACKUP_SSH_KEY_FILE")?,
            ),
            (
                "known_hosts",
                std::fs::read(&config.known_hosts_file)
                    .context("cannot read BACKUP_KNOWN_HOSTS_FILE")?,
            ),
        ];
        if let Some(passphrase) = config.borg.as_ref().and_then(|b| b.passphrase.as_ref()) {
            files.push(("passphrase", passphrase.expose().as_bytes().to_vec()));
        }
        let mut archive = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            archive.append_data(&mut header, format!("{}/{name}", &SECRETS[1..]), &data[..])?;
        }
        let bytes = archive.into_inner()?;
        self.docker
            .upload_to_container(
                &self.id,
                Some(UploadToContainerOptionsBuilder::new().path("/").build()),
                bollard::body_full(bytes.into()),
            )
            .await
            .context("cannot copy the ssh key into the restore helper")
    }

    /// Starts the helper, logs progress while it runs, returns its exit code and output.
    pub async fn run(&self, cancel: &CancellationToken) -> Result<(i64, String)> {
        self.docker
            .start_container(
                &self.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .context("cannot start the restore helper")?;
        let started = Instant::now();
        let mut wait = self
            .docker
            .wait_container(&self.id, None::<WaitContainerOptions>);
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        ticker.tick().await;
        let code = loop {
            tokio::select! {
                _ = cancel.cancelled() => bail!("cancelled"),
                _ = ticker.tick() => info!(seconds = started.elapsed().as_secs(), "restore in progress"),
                next = wait.next() => match next {
                    Some(Ok(response)) => break response.status_code,
                    // A non-zero exit arrives as an error carrying the code.
                    Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => break code,
                    Some(Err(e)) => return Err(e).context("cannot wait for the restore helper"),
                    None => bail!("the restore helper vanished"),
                },
            }
        };
        let mut logs = self.docker.logs(
            &self.id,
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        );
        let mut output = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            output.push_str(&chunk.to_string());
        }
        Ok((code, output))
    }

    /// Removes the helper (killing it if it still runs).
    pub async fn remove(self) {
        if let Err(e) = self
            .docker
            .remove_container(
                &self.id,
                Some(
                    RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(false)
                        .build(),
                ),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot remove the restore helper");
        }
    }
}

/// The helper's script. `$1` is the mode, `$2` dry-run (`0`/`1`), `$3` the target's mount; the
/// rest are the mode's arguments. A whole source (`mirror`, `archive`) replaces the target's
/// content and prints `RESTORED <entries> <bytes>`; a project's files (`files`, `archive-files`)
/// and one path of a source (`path`, `archive-path`) are added or replaced below the target, and
/// nothing else there is touched or read.
pub const HELPER_SCRIPT: &str = r#"set -eu
mode=$1; dry=$2; dir=$3; shift 3
count() {
  if [ "$dry" = 0 ]; then
    echo "RESTORED $(find "$dir" -mindepth 1 | wc -l) $(du -sb --apparent-size "$dir" | cut -f1)"
  fi
}
case "$mode" in
mirror)
  # $@: the rsync argv
  "$@"
  count ;;
path)
  # $@: the rsync argv of one path (its own count is in its --stats)
  "$@" ;;
files)
  # $@: the files (relative paths), --, the rsync argv that reads their list
  : > /tmp/restore-files
  while [ "$1" != -- ]; do printf '%s\0' "$1" >> /tmp/restore-files; shift; done
  shift
  "$@" ;;
archive|archive-files|archive-path)
  # $1 repository::archive  $2 the item's path in the archive; then the borg client's
  # environment (NAME=VALUE words), --, and its options for reading
  repo=$1 item=$2; shift 2
  while [ "$1" != -- ]; do export "$1"; shift; done
  shift
  if [ "$mode" = archive-path ]; then
    # <source>/<path>: the path below the mount, with its subtree, nothing else touched.
    cd "$dir"
    if [ "$dry" = 1 ]; then
      exec borg extract "$@" --dry-run --list --strip-components 1 "$repo" "$item"
    fi
    exec borg extract "$@" --numeric-ids --sparse --strip-components 1 "$repo" "$item"
  fi
  if [ "$mode" = archive-files ]; then
    # <project>/files/<host path>: the host paths, below the mount, the mount itself untouched.
    cd "$dir"
    if [ "$dry" = 1 ]; then
      exec borg extract "$@" --dry-run --list --strip-components 2 "$repo" "$item"
    fi
    exec borg extract "$@" --numeric-ids --strip-components 2 "$repo" "$item"
  fi
  cd "$(dirname "$dir")"
  if [ "$dry" = 1 ]; then
    exec borg extract "$@" --dry-run --list "$repo" "$item"
  fi
  find "$dir" -mindepth 1 -delete
  # Not stripped: the item's own directory is extracted onto the mount, with its metadata.
  borg extract "$@" --numeric-ids --sparse "$repo" "$item"
  count ;;
*)
  echo "unknown mode $mode" >&2; exit 2 ;;
esac
"#;
