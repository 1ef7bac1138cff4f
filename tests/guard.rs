//! The guarded remote (compose/remote/guard.py as the forced command of the sidecar's key): the
//! attack, with the sidecar's own private key, from a container that has ssh, rsync and borg (the
//! sidecar image); `init` against a remote whose key still opens a shell; `check` telling the
//! two apart; and no secret in any process's argv while a run snapshots.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::copy_targets::*;
use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the attacker's shell starts with: the sidecar's key and pinned host key, and `$R`.
fn prelude(remote: &Remote) -> String {
    format!(
        "S='ssh -i /ssh/id_ed25519 -o UserKnownHostsFile=/ssh/known_hosts \
         -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR'; R=root@{}; \
         export BORG_RSH=\"$S\" BORG_PASSPHRASE='{PASSPHRASE}' \
         BORG_RELOCATED_REPO_ACCESS_IS_OK=yes; cd /tmp; \
         through() {{ got=$(timeout 5 bash -c \"exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3\" \
         2>/dev/null); echo \"a connection through the forward read: ${{got:-nothing}}\" >&2; \
         [ \"$got\" = SSH- ]; }}; ",
        remote.name
    )
}

/// Runs `script` as the attacker; returns the exit code and what it printed.
fn attack(env: &Env, remote: &Remote, script: &str) -> (i32, String) {
    let ssh = format!("{}:/ssh:ro", env.ssh_dir.path().display());
    let full = format!("{}{script}", prelude(remote));
    let out = docker_output(&[
        "run",
        "--rm",
        "--label",
        TEST_LABEL,
        "--network",
        &env.network,
        "-v",
        &ssh,
        "--entrypoint",
        "sh",
        SIDECAR_IMAGE,
        "-c",
        &full,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Everything on the remote an attack could touch: the mirror, the repository, /etc, root's
/// ssh directory, the guard, and what is in /tmp (where the injections would leave their mark;
/// not /tmp's own time, which any Python started there, borg serve too, touches).
const STATE: &str = "{ find /backup /etc /root/.ssh /usr/local -xdev; find /tmp -mindepth 1; } \
    2>/dev/null | xargs -d '\\n' stat -c '%n %F %s %.9Y %a %u %g %N' | sort | sha256sum; \
    cat /etc/shadow /root/.ssh/authorized_keys | sha256sum";

fn hex(path: &str) -> String {
    path.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Shortens a refusal to its telling line for the table.
fn answer(output: &str) -> String {
    let line = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .find(|l| {
            [
                "refused",
                "guard",
                "denied",
                "prohibited",
                "failed",
                "not allowed",
                "Error",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .or_else(|| output.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .unwrap_or("")
        .to_string();
    match line.char_indices().nth(107) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

#[test]
fn a_stolen_key_cannot_destroy_history() {
    let env = Env::new("attack");
    let remote = env.remote();
    // A tight retention on the remote, so that the attack's snapshot verb really prunes.
    env.on_remote(
        &remote,
        &format!(
            "printf 'mirror = /backup/mirror\\nrepository = /backup/borg\\nkeep_daily = 1\\n\
             keep_weekly = 0\\nkeep_monthly = 0\\n' > /etc/backup-sidecar/guard.conf; {GUARD} \
             --setup < /dev/null > /dev/null"
        ),
    );
    // A second copy on a server of the owner's, which the key must not reach either.
    let copy = env.copy_target(&remote, CopyKind::Sftp);
    let copy_host = copy.container.clone().unwrap();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo precious > /data/file");
    let sidecar = env.sidecar(&remote, &[("BACKUP_ARCHIVE_PREFIX", "nas")]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let copied = wait_for_events(&sidecar, "copy finished", 1, RUN_TIMEOUT).remove(0);
    assert_eq!(copied["fields"]["outcome"], "success", "{copied}");
    assert!(
        events_named(&sidecar, "remote unguarded").is_empty(),
        "the test remote is guarded"
    );
    let before = env.archives(&remote);
    assert_eq!(before.len(), 1, "{before:?}");
    let good = env.on_remote(&remote, "tail -n 1 /backup/borg/transactions");
    let good: u64 = good
        .split([' ', ','])
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the transaction log: {good}"));
    // A symlink in the mirror that points out of it: the key may write the mirror, so this is
    // planted first, and then used.
    let (code, out) = attack(
        &env,
        &remote,
        "mkdir -p plant && ln -s /etc plant/evil && ln -s /root plant/home && \
         rsync -a -e \"$S\" plant/ $R::mirror/",
    );
    assert_eq!(
        code, 0,
        "planting a symlink in the mirror is a mirror write: {out}"
    );

    let archive = &before[0];
    let mirror = hex("/backup/mirror");
    let evil = hex("/backup/mirror/evil");
    let cases: Vec<(&str, String)> = vec![
        ("interactive shell", "$S -tt $R < /dev/null".into()),
        ("ssh remote 'rm -rf /backup'", "$S $R 'rm -rf /backup'".into()),
        ("sftp", "echo 'rm /backup/borg/config' | sftp -b - -i /ssh/id_ed25519 -o UserKnownHostsFile=/ssh/known_hosts -o BatchMode=yes $R".into()),
        ("scp of authorized_keys", "scp -O -i /ssh/id_ed25519 -o UserKnownHostsFile=/ssh/known_hosts -o BatchMode=yes $R:/root/.ssh/authorized_keys k".into()),
        ("$() in an archive name", "$S $R 'backup-sidecar-guard list-archive $(touch${IFS}/tmp/pwned)'".into()),
        ("; in an archive prefix", "$S $R 'backup-sidecar-guard snapshot x;touch${IFS}/tmp/pwned 60 2f'".into()),
        ("backquotes in an item name", "$S $R 'backup-sidecar-guard item `touch${IFS}/tmp/pwned` 61'".into()),
        ("| in a sample name", format!("$S $R 'backup-sidecar-guard sample a|touch${{IFS}}/tmp/pwned 61 {mirror}'")),
        ("; after a verb", "$S $R 'backup-sidecar-guard hello; touch /tmp/pwned'".into()),
        ("a path that is not hex", "$S $R 'backup-sidecar-guard stamp-write /backup/mirror;touch${IFS}/tmp/pwned'".into()),
        ("stat of /etc/shadow", format!("$S $R 'backup-sidecar-guard stat {}'", hex("/etc/shadow"))),
        (".. in a verb's path", format!("$S $R 'backup-sidecar-guard is-dir {}'", hex("/backup/mirror/../../etc"))),
        ("stamp through the planted symlink", format!("$S $R 'backup-sidecar-guard stamp-write {evil}'")),
        ("sample of /etc/shadow through the symlink", format!("printf %s \"$BORG_PASSPHRASE\" | $S $R 'backup-sidecar-guard sample {archive} 61 {}'", hex("/backup/mirror/evil/shadow"))),
        ("rsync to /etc (plain remote shell)", "echo x > x; rsync -a -e \"$S\" x $R:/etc/pwned".into()),
        ("rsync to ../../etc", "echo x > x; rsync -a -e \"$S\" x $R::mirror/../../etc/pwned".into()),
        ("rsync to another module", "echo x > x; rsync -a -e \"$S\" x $R::etc/pwned".into()),
        ("rsync through the planted symlink", "echo x > x; rsync -a -e \"$S\" x $R::mirror/evil/pwned".into()),
        ("rsync of /etc/shadow (plain remote shell)", "rsync -a -e \"$S\" $R:/etc/shadow s".into()),
        ("rsync of ../../etc/shadow", "rsync -a -e \"$S\" $R::mirror/../../etc/shadow s".into()),
        ("rsync -L of evil/shadow", "rsync -aL -e \"$S\" $R::mirror/evil/shadow s".into()),
        ("rsync of authorized_keys through a symlink", "rsync -aL -e \"$S\" $R::mirror/home/.ssh/authorized_keys k".into()),
        ("rsync --write-devices", "echo x > x; rsync -a --write-devices -e \"$S\" x $R::mirror/x".into()),
        ("borg delete through borg serve", format!("borg delete ssh://$R/backup/borg::{archive}")),
        ("borg delete of the repository", "borg delete --force ssh://$R/backup/borg".into()),
        ("borg prune --keep-last 1 through borg serve", "borg prune --keep-last 1 ssh://$R/backup/borg".into()),
        ("borg compact through borg serve", "borg compact ssh://$R/backup/borg".into()),
        ("borg key change-passphrase", "BORG_NEW_PASSPHRASE=x borg key change-passphrase ssh://$R/backup/borg".into()),
        ("borg serve of another path", "borg init -e none ssh://$R/tmp/repo".into()),
        ("borg with --content-from-command", "borg create --content-from-command ssh://$R/backup/borg::x -- touch /tmp/pwned".into()),
        ("prune options to the snapshot verb", format!("printf %s \"$BORG_PASSPHRASE\" | $S $R 'backup-sidecar-guard snapshot nas 60 {mirror} --keep-last 1'")),
        ("a compact verb", "$S $R 'backup-sidecar-guard compact'".into()),
        ("borg compact as a command", "$S $R 'borg compact /backup/borg'".into()),
        ("a pre verb with a command", "$S $R 'backup-sidecar-guard pre touch /tmp/pwned'".into()),
        ("a post verb with a command", "$S $R 'backup-sidecar-guard post rm -rf /backup'".into()),
        ("the owner's --setup through the key", "$S $R '/usr/local/lib/backup-sidecar/guard --compact'".into()),
        // A local forward is set up on the client; the server refuses each connection through
        // it. So the attack is a connection to the remote's own sshd through the forward.
        ("local port forwarding", "$S -f -N -L 127.0.0.1:2222:127.0.0.1:22 $R && sleep 1 && through 2222".into()),
        ("remote port forwarding", "$S -f -N -o ExitOnForwardFailure=yes -R 127.0.0.1:2222:127.0.0.1:22 $R".into()),
        // sshd lists the options a key has; restrict leaves only the command.
        ("agent forwarding", "eval $(ssh-agent) > /dev/null; ssh-add -q /ssh/id_ed25519; \
            out=$($S -v -A $R backup-sidecar-guard hello 2>&1); \
            case \"$out\" in *'key options: command'*) ;; *) exit 0 ;; esac; \
            case \"$out\" in *agent-forwarding*) exit 0 ;; esac; \
            echo 'agent forwarding refused: the key options are only: command' >&2; exit 1".into()),
        ("X11 forwarding", "out=$(DISPLAY=:0 $S -v -X $R backup-sidecar-guard hello 2>&1); \
            case \"$out\" in *'X11 forwarding disabled'*) \
            echo 'X11 forwarding disabled by key options' >&2; exit 1 ;; esac; exit 0".into()),
        ("ssh -O forward -L on a shared connection", "$S -M -S /tmp/cm -o ControlPersist=60 -N -f $R && $S -S /tmp/cm -O forward -L 127.0.0.1:2223:127.0.0.1:22 $R && sleep 1 && through 2223".into()),
        ("ssh -O forward -R on a shared connection", "$S -M -S /tmp/cm -o ControlPersist=60 -N -f $R && $S -S /tmp/cm -O forward -R 127.0.0.1:2224:127.0.0.1:22 $R".into()),
        ("a command on a shared connection", "$S -M -S /tmp/cm -o ControlPersist=60 -N -f $R && $S -S /tmp/cm $R 'rm -rf /backup'; r=$?; $S -S /tmp/cm -O exit $R 2>/dev/null; exit $r".into()),
        // The second copy: its place, credentials and configuration stay the owner's.
        ("read the copy's rclone config", "$S $R 'cat /etc/backup-sidecar/rclone.conf'".into()),
        ("rsync of the copy's rclone config", "rsync -a -e \"$S\" $R::mirror/../../etc/backup-sidecar/rclone.conf s".into()),
        ("rsync over guard.conf (to drop the copy)", "echo x > x; rsync -a -e \"$S\" x $R::mirror/../../etc/backup-sidecar/guard.conf".into()),
        ("stat of the copy's ssh key", format!("$S $R 'backup-sidecar-guard stat {}'", hex("/etc/backup-sidecar/copy_key"))),
        ("a copy to a target of the attacker's", format!("$S $R 'backup-sidecar-guard copy nas 60 {mirror} evil:/x'")),
        ("rclone options as the copy's prefix", format!("$S $R 'backup-sidecar-guard copy --config=/tmp/x 60 {mirror}'")),
        ("rclone purge of the copy as a command", "$S $R 'rclone purge offsite:/backup/copy'".into()),
        ("a copy-check with a target", "$S $R 'backup-sidecar-guard copy-check 60 offsite:/'".into()),
        ("borg serve of the copy's staging", "borg list ssh://$R/backup/.borg.copy".into()),
        ("the sidecar's key on the copy's server", format!("ssh -i /ssh/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR root@{copy_host} 'rm -rf /backup/copy'")),
    ];
    let copy_state = || {
        docker(&[
            "exec",
            &copy_host,
            "sh",
            "-c",
            "find /backup /root/.ssh -xdev 2>/dev/null | xargs -d '\\n' stat -c '%n %s %.9Y %a' | sort | sha256sum",
        ])
    };
    let mut table = vec![(
        "attack".to_string(),
        "what the guard (or sshd) answered".to_string(),
        "what changed".to_string(),
    )];
    for (name, script) in &cases {
        let state = env.on_remote(&remote, STATE);
        let copy_before = copy_state();
        let (code, out) = attack(&env, &remote, script);
        let after = env.on_remote(&remote, STATE);
        assert_ne!(code, 0, "{name}: the attack succeeded:\n{out}");
        assert_eq!(state, after, "{name}: the remote changed:\n{out}");
        assert_eq!(
            copy_before,
            copy_state(),
            "{name}: the copy changed:\n{out}"
        );
        table.push((name.to_string(), answer(&out), "nothing".to_string()));
    }
    assert_eq!(
        env.on_remote(&remote, "ls /tmp/pwned 2>/dev/null; true"),
        ""
    );

    // What the key can do: snapshot with the remote's retention, which prunes the older archive
    // of the day (keep_daily = 1 here). It is only marked: the documented rollback brings it back.
    let (code, out) = attack(
        &env,
        &remote,
        &format!(
            "sleep 1; printf %s \"$BORG_PASSPHRASE\" | $S $R 'backup-sidecar-guard snapshot nas 60 {mirror}' > /dev/null"
        ),
    );
    assert_eq!(code, 0, "{out}");
    let after_attack = env.archives(&remote);
    assert!(
        !after_attack.contains(archive),
        "the prune through the key marks the old archive deleted: {after_attack:?}"
    );
    table.push((
        "snapshot verb pruning with the remote's retention (keep_daily 1)".into(),
        "accepted: a new archive, the older one of the day pruned".into(),
        format!("{archive} hidden; the append-only log keeps it"),
    ));
    let listed = env.on_remote(&remote, &format!("{GUARD} --rollback"));
    assert!(listed.contains(&format!("transaction {good},")), "{listed}");
    let rolled = env.on_remote(&remote, &format!("{GUARD} --rollback {good}"));
    assert!(rolled.contains("rolled"), "{rolled}");
    env.borg(&remote, &["check", "/backup/borg"]);
    let restored = env.archives(&remote);
    assert_eq!(restored, before, "the rollback brings back every archive");
    let file = env.archive_file(&remote, archive, &format!("{volume}/file"));
    assert_eq!(file, "precious\n");
    table.push((
        "(the owner's rollback: guard --rollback N on the remote)".into(),
        format!("rolled back to transaction {good}"),
        format!("{archive} listed again; borg check passes"),
    ));

    // What the key can do with the copy: bring it up to date, as after each snapshot. What that
    // replaces or deletes there is moved aside, never deleted.
    let (code, out) = attack(
        &env,
        &remote,
        &format!("$S $R 'backup-sidecar-guard copy nas 60 {mirror}' > /dev/null"),
    );
    assert_eq!(code, 0, "{out}");
    table.push((
        "copy verb: the copy brought up to date".into(),
        "accepted: the repository replicated with the owner's rclone config".into(),
        "the copy; what it replaced moved to offsite:/backup/copy.deleted/<time>".into(),
    ));

    // After all that, the sidecar still backs up through the guard.
    let run = run_now(&sidecar, 1, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");

    println!("\n| attack | answer | changed |\n|---|---|---|");
    for (attack, answer, changed) in table.iter().skip(1) {
        println!("| {attack} | {} | {changed} |", answer.replace('|', "\\|"));
    }
}

#[test]
fn check_tells_a_guarded_remote_from_an_open_one() {
    let env = Env::new("guardcheck");
    let guarded = env.remote();
    let args = env.sidecar_args(&env.sidecar_env(&guarded, &[]));
    let mut argv: Vec<&str> = vec!["run", "--rm"];
    argv.extend(args.iter().map(String::as_str));
    argv.extend([SIDECAR_IMAGE, "check"]);
    let out = docker_output(&argv);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok    remote guard: guarded (guard 2)"),
        "{text}"
    );
    assert!(
        text.contains("ok    second copy: none configured on the remote (guard 2"),
        "{text}"
    );
    assert!(
        text.contains("append-only repository /backup/borg"),
        "{text}"
    );

    drop(env);
    let env = Env::new("guardopen");
    let open = env.remote_with(&["-e", "GUARD=off"]);
    let args = env.sidecar_args(&env.sidecar_env(&open, &[]));
    let mut argv: Vec<&str> = vec!["run", "--rm"];
    argv.extend(args.iter().map(String::as_str));
    argv.extend([SIDECAR_IMAGE, "check"]);
    let out = docker_output(&argv);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "an open remote works, loudly: {text}");
    assert!(text.contains("WARN  remote guard: NOT GUARDED"), "{text}");
    // The daemon says it once, as an event.
    let sidecar = env.sidecar(&open, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    assert_eq!(events_named(&sidecar, "remote unguarded").len(), 1);
}

#[test]
fn init_prepares_an_open_remote_and_narrows_its_key() {
    let env = Env::new("init");
    let remote = env.remote_with(&["-e", "GUARD=off"]);
    env.on_remote(&remote, "rm -rf /backup/borg");
    let fingerprint = env
        .on_remote(
            &remote,
            "ssh-keygen -l -f /etc/ssh/keys/ssh_host_ed25519_key.pub",
        )
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    // init pins the host key itself: known_hosts starts empty, and writable.
    std::fs::write(env.ssh_path("known_hosts"), "").unwrap();
    let init = |args: &[&str]| {
        let env_vars = env.sidecar_env(
            &remote,
            &[
                ("BACKUP_KEEP_WEEKLY", "2"),
                ("BACKUP_REMOTE_PRE_COMMAND", "touch /tmp/pre-ran"),
            ],
        );
        let mut run_args = env.sidecar_args(&env_vars);
        for arg in run_args.iter_mut() {
            if arg.ends_with(":/ssh:ro") {
                *arg = arg.trim_end_matches(":ro").to_string();
            }
        }
        let mut argv: Vec<String> = vec!["run".into(), "--rm".into()];
        argv.extend(run_args);
        argv.extend([SIDECAR_IMAGE.to_string(), "init".to_string()]);
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = docker_output(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // The image ships the guard; init installs its own copy, so take the image's away.
    env.on_remote(&remote, "rm /usr/local/lib/backup-sidecar/guard");
    let untouched_before = env.on_remote(&remote, "cat /root/.ssh/authorized_keys");

    let (ok, out) = init(&[
        "--host-key",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]);
    assert!(!ok, "a wrong fingerprint is refused: {out}");
    assert!(out.contains("none is --host-key"), "{out}");
    assert_eq!(
        std::fs::read_to_string(env.ssh_path("known_hosts")).unwrap(),
        ""
    );

    let (ok, out) = init(&["--host-key", &fingerprint]);
    assert!(ok, "{out}");
    assert!(
        out.contains("change: install /usr/local/lib/backup-sidecar/guard"),
        "{out}"
    );
    assert!(out.contains("change: restrict this key"), "{out}");
    assert!(out.contains("run again with --yes"), "{out}");
    assert_eq!(
        env.on_remote(&remote, "cat /root/.ssh/authorized_keys"),
        untouched_before
    );
    assert_eq!(
        env.on_remote(
            &remote,
            "ls /usr/local/lib/backup-sidecar/guard /backup/borg 2>&1; true"
        )
        .matches("No such file")
        .count(),
        2,
        "without --yes nothing is installed"
    );

    let (ok, out) = init(&["--host-key", &fingerprint, "--yes"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("BORG PAPER KEY") || out.contains("To restore key use"),
        "the key export is printed: {out}"
    );
    assert!(
        out.contains("done: the key now runs only the guard's vocabulary"),
        "{out}"
    );
    let known = std::fs::read_to_string(env.ssh_path("known_hosts")).unwrap();
    assert!(known.starts_with(&remote.name), "{known}");
    let keys = env.on_remote(&remote, "cat /root/.ssh/authorized_keys");
    assert!(
        keys.starts_with("restrict,command=\"/usr/local/lib/backup-sidecar/guard\" ssh-ed25519 "),
        "{keys}"
    );
    let conf = env.on_remote(&remote, "cat /etc/backup-sidecar/guard.conf");
    assert!(conf.contains("keep_weekly = 2"), "{conf}");
    assert!(conf.contains("pre_command = touch /tmp/pre-ran"), "{conf}");
    assert!(
        env.on_remote(&remote, "cat /backup/borg/config")
            .contains("append_only = 1"),
        "the repository is append-only"
    );

    // The key is narrowed: it cannot undo any of it.
    let (code, out) = attack(&env, &remote, "$S $R 'rm /root/.ssh/authorized_keys'");
    assert_ne!(code, 0, "{out}");

    // Run twice, it only says the remote is guarded.
    let (ok, out) = init(&["--host-key", &fingerprint, "--yes"]);
    assert!(ok, "{out}");
    assert!(out.contains("the remote is guarded already"), "{out}");

    // And a backup goes through the guard, with the remote's pre command.
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo hello > /data/f");
    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    assert!(
        run["fields"]["archive"].as_str().unwrap_or("").len() > 1,
        "{run}"
    );
    assert!(events_named(&sidecar, "remote unguarded").is_empty());
    assert_eq!(env.on_remote(&remote, "ls /tmp/pre-ran"), "/tmp/pre-ran\n");
}

#[test]
fn no_secret_in_any_process_argv_during_a_run() {
    let env = Env::new("argv");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    // Enough data for borg create to take a moment.
    env.in_volume(
        &volume,
        "for i in $(seq 1 40); do head -c 1000000 /dev/urandom > /data/f$i; done",
    );
    let _app = env.app("app", &volume, "sleep 3600");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sidecar_name = format!("{}-sidecar", env.name);
    let watchers: Vec<_> = [sidecar_name.clone(), remote.name.clone()]
        .into_iter()
        .map(|container| {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = docker_output(&[
                        "exec",
                        &container,
                        "sh",
                        "-c",
                        "for f in /proc/[0-9]*/cmdline; do tr '\\000' ' ' < $f; echo; done \
                         2>/dev/null",
                    ]);
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    seen.lock().unwrap().extend(
                        text.lines()
                            .filter(|l| !l.trim().is_empty())
                            .map(|l| format!("{container}: {l}")),
                    );
                }
            })
        })
        .collect();
    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    stop.store(true, Ordering::Relaxed);
    for watcher in watchers {
        watcher.join().unwrap();
    }
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let seen = seen.lock().unwrap();
    // The watch saw the run's children on both sides, so its silence about secrets means something.
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&sidecar_name) && l.contains("rsync")),
        "the watch saw the sidecar's rsync"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&remote.name) && l.contains("borg")),
        "the watch saw the remote's borg"
    );
    let private_key = std::fs::read_to_string(env.ssh_path("id_ed25519")).unwrap();
    let key_line = private_key.lines().nth(1).unwrap();
    for line in seen.iter() {
        assert!(
            !line.contains(PASSPHRASE),
            "the passphrase in an argv: {line}"
        );
        assert!(
            !line.contains("horse"),
            "part of the passphrase in an argv: {line}"
        );
        assert!(
            !line.contains(key_line),
            "the private key in an argv: {line}"
        );
    }
    println!(
        "argv watch: {} command lines seen on the sidecar and the remote, no secret among them",
        seen.len()
    );
}
