//! Commands run inside an app's own container through the Docker exec API: the `backup.exec-pre`
//! and `backup.exec-post` labels (a database dump into the volume before the live pass, its
//! cleanup after the thaw). Each line of their output goes to the log as it comes.

use anyhow::{Context, Result, anyhow, bail};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::plan::{ExecHook, HookStage};

/// Runs `command` with `sh -c` in the container, logging its output; fails when it exits
/// non-zero, outlives `timeout` (then it is sent SIGTERM, then SIGKILL) or `cancel` fires.
pub async fn exec(
    docker: &Docker,
    hook: &ExecHook,
    stage: HookStage,
    command: &str,
    cancel: &CancellationToken,
) -> Result<()> {
    // The first line says the shell's pid, so that a command past its time can be stopped; then
    // the shell becomes the command.
    let wrapped = vec![
        "sh".to_string(),
        "-c".to_string(),
        "echo \"backup-sidecar-exec-pid $$\"; exec sh -c \"$1\"".to_string(),
        "sh".to_string(),
        command.to_string(),
    ];
    let created = docker
        .create_exec(
            &hook.id,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(wrapped),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot exec in container {}", hook.container))?;
    let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .with_context(|| format!("cannot start the exec in container {}", hook.container))?
    else {
        bail!(
            "the engine detached the exec in container {}",
            hook.container
        );
    };
    let mut pid: Option<String> = None;
    let mut last = String::new();
    let read = async {
        while let Some(chunk) = output.next().await {
            let (text, stream) = match chunk? {
                LogOutput::StdOut { message } => (message, "stdout"),
                LogOutput::StdErr { message } => (message, "stderr"),
                _ => continue,
            };
            for line in String::from_utf8_lossy(&text).lines() {
                if pid.is_none()
                    && let Some(p) = line.strip_prefix("backup-sidecar-exec-pid ")
                {
                    pid = Some(p.trim().to_string());
                    continue;
                }
                if !line.trim().is_empty() {
                    last = line.to_string();
                }
                info!(
                    container = %hook.container,
                    hook = stage.label(),
                    stream,
                    line,
                    "exec output"
                );
            }
        }
        Ok::<(), bollard::errors::Error>(())
    };
    let outcome = tokio::select! {
        read = tokio::time::timeout(hook.timeout, read) => match read {
            Ok(read) => read.map_err(|e| anyhow!(e)),
            Err(_) => Err(anyhow!(
                "{} in {} did not finish within {} (backup.exec-timeout)",
                stage.label(),
                hook.container,
                humantime::format_duration(hook.timeout)
            )),
        },
        _ = cancel.cancelled() => Err(anyhow!("cancelled")),
    };
    if let Err(e) = outcome {
        if let Some(pid) = &pid {
            stop(docker, &hook.id, pid).await;
        }
        return Err(e);
    }
    let inspected = docker
        .inspect_exec(&created.id)
        .await
        .context("cannot read the exec's exit code")?;
    match inspected.exit_code {
        Some(0) => Ok(()),
        code => bail!(
            "{} in {} failed (exit {}){}",
            stage.label(),
            hook.container,
            code.map_or("unknown".to_string(), |c| c.to_string()),
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        ),
    }
}

/// Finds the processes below `$1` through /proc (no ps or pkill needed: busybox and Debian's
/// slim images both have this much), sends them and `$1` SIGTERM, and SIGKILL two seconds later.
const STOP_TREE: &str = r#"all=" $1 "; changed=1
while [ "$changed" = 1 ]; do
  changed=0
  for s in /proc/[0-9]*/stat; do
    line=$(cat "$s" 2>/dev/null) || continue
    p=${s#/proc/}; p=${p%/stat}
    set -- ${line##*) }
    case "$all" in *" $p "*) continue ;; esac
    case "$all" in *" $2 "*) all="$all$p "; changed=1 ;; esac
  done
done
kill -TERM $all 2>/dev/null; sleep 2; kill -KILL $all 2>/dev/null; true"#;

/// Stops the command and what it started, from a second exec.
async fn stop(docker: &Docker, container: &str, pid: &str) {
    let script = [STOP_TREE, "sh", pid].map(str::to_string);
    let cmd = vec!["sh".to_string(), "-c".to_string()]
        .into_iter()
        .chain(script)
        .collect();
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                cmd: Some(cmd),
                ..Default::default()
            },
        )
        .await;
    let started = match created {
        Ok(created) => match docker.start_exec(&created.id, None).await {
            // Read to the end: the exec has done its work then.
            Ok(StartExecResults::Attached { mut output, .. }) => {
                while output.next().await.is_some() {}
                Ok(())
            }
            Ok(StartExecResults::Detached) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        warn!(container, error = %e, "cannot stop a command past its backup.exec-timeout");
    }
}

/// Runs the `stage` command of each of `hooks`, one after the other. Before the live pass the
/// first failure stops the rest and is the error. After the thaw every command runs, also when
/// the run is being cancelled (each then for at most `grace`), and a failure is logged, not
/// returned: the data is mirrored by then.
pub async fn run_stage(
    docker: &Docker,
    hooks: &[ExecHook],
    stage: HookStage,
    grace: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    for hook in hooks {
        let Some(command) = hook.command(stage) else {
            continue;
        };
        info!(container = %hook.container, hook = stage.label(), command, "exec started");
        let result = match stage {
            HookStage::Pre => exec(docker, hook, stage, command, cancel).await,
            HookStage::Post if cancel.is_cancelled() => {
                let own = CancellationToken::new();
                tokio::time::timeout(grace, exec(docker, hook, stage, command, &own))
                    .await
                    .unwrap_or_else(|_| Err(anyhow!("did not finish during shutdown")))
            }
            HookStage::Post => exec(docker, hook, stage, command, cancel).await,
        };
        match (stage, result) {
            (_, Ok(())) => info!(container = %hook.container, hook = stage.label(), "exec done"),
            (HookStage::Pre, Err(e)) => return Err(e),
            (HookStage::Post, Err(e)) => tracing::error!(
                container = %hook.container,
                hook = stage.label(),
                error = %format!("{e:#}"),
                "exec failed"
            ),
        }
    }
    Ok(())
}
