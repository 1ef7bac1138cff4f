//! A compose project's files, copied before its group's passes into `BACKUP_STATE_DIR/projects/`:
//! `manifest.json` (the project's directory, files, volumes and binds, for `restore --project`)
//! and `files/<host path>` with their owners, modes, times, ACLs and xattrs, and those of their
//! directories. The copy is then mirrored like any source.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::plan::{Origin, PlannedVolume, ProjectFiles};
use crate::remote::process::{self, Cmd};
use crate::tasks::layout::{FILES_DIR, MANIFEST, source_path};

/// Copies a project's files afresh (nothing for other sources).
pub async fn stage(
    config: &Config,
    volume: &PlannedVolume,
    cancel: &CancellationToken,
) -> Result<()> {
    let Origin::Project(project) = &volume.origin else {
        return Ok(());
    };
    let dir = source_path(config, volume);
    stage_into(config, project, &dir, cancel)
        .await
        .with_context(|| format!("copying the files of compose project {}", project.project))
}

async fn stage_into(
    config: &Config,
    project: &ProjectFiles,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir.join(FILES_DIR))?;
    if !project.files.is_empty() {
        let root = config.host_root.as_deref().unwrap_or(Path::new("/"));
        // `root/./path`: --relative keeps the path from the `./` on, with its directories.
        let sources = project
            .files
            .iter()
            .map(|f| root.join(".").join(f.trim_start_matches('/')));
        let cmd = Cmd::new("rsync")
            .args(["-aHAX", "--numeric-ids", "--relative"])
            .args(sources)
            .arg(dir.join(FILES_DIR));
        let done = process::run(&cmd, cancel).await?;
        if !done.success() {
            bail!("rsync: {}", done.last_error_line());
        }
    }
    let manifest = serde_json::to_vec_pretty(project)?;
    std::fs::write(dir.join(MANIFEST), manifest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn stages_the_files_with_their_directories_and_a_manifest() {
        let host = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let project_dir = host.path().join("srv/app");
        std::fs::create_dir_all(&project_dir).unwrap();
        std::fs::write(project_dir.join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::write(project_dir.join(".env"), "A=1\n").unwrap();
        std::fs::write(project_dir.join("not-kept"), "x").unwrap();
        let key = state.path().join("key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let config = Config::from_raw(crate::config::RawConfig {
            backup_remote: Some("root@pi".into()),
            backup_remote_dir: Some("/m".into()),
            backup_ssh_key_file: Some(key.display().to_string()),
            backup_known_hosts_file: Some("/dev/null".into()),
            backup_host_root: Some(host.path().display().to_string()),
            backup_state_dir: Some(state.path().display().to_string()),
            ..Default::default()
        })
        .unwrap();
        let files = ProjectFiles {
            project: "app".into(),
            working_dir: "/srv/app".into(),
            files: vec!["/srv/app/.env".into(), "/srv/app/compose.yaml".into()],
            volumes: vec!["app_db".into()],
            binds: vec!["/srv/app/data".into()],
        };
        let volume = PlannedVolume {
            name: "_project-app".into(),
            origin: Origin::Project(files.clone()),
            excludes: Vec::new(),
            untouched: Vec::new(),
        };
        let dir = source_path(&config, &volume);
        std::fs::create_dir_all(dir.join("files/stale")).unwrap();
        stage(&config, &volume, &CancellationToken::new())
            .await
            .unwrap();
        let staged = dir.join("files/srv/app");
        assert_eq!(
            std::fs::read_to_string(staged.join("compose.yaml")).unwrap(),
            "services: {}\n"
        );
        assert_eq!(
            std::fs::read_to_string(staged.join(".env")).unwrap(),
            "A=1\n"
        );
        assert!(!staged.join("not-kept").exists());
        assert!(!dir.join("files/stale").exists());
        assert_eq!(
            std::fs::metadata(&staged).unwrap().mode(),
            std::fs::metadata(&project_dir).unwrap().mode()
        );
        let manifest: ProjectFiles =
            serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest, files);
    }
}
