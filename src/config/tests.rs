//! The configuration's tests: each section, its defaults, and each bad value naming its variable.

use super::channel::NotifyOn;
use super::sections::*;
use super::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, mode) in [("id_ed25519", 0o600), ("known_hosts", 0o644)] {
            let path = dir.path().join(name);
            std::fs::File::create(&path)
                .unwrap()
                .write_all(b"x\n")
                .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn base(&self) -> Vec<(String, String)> {
        vec![
            ("BACKUP_REMOTE".into(), "pi@backup.lan".into()),
            ("BACKUP_REMOTE_DIR".into(), "/mnt/backup/data/".into()),
            ("BACKUP_SSH_KEY_FILE".into(), self.path("id_ed25519")),
            ("BACKUP_KNOWN_HOSTS_FILE".into(), self.path("known_hosts")),
        ]
    }

    /// The base variables, with `extra` added or replacing them.
    fn vars(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars = self.base();
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            vars.push((k.to_string(), v.to_string()));
        }
        vars
    }

    fn with(&self, extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(self.vars(extra))
    }

    fn raw(&self, extra: &[(&str, &str)]) -> RawConfig {
        RawConfig::from_vars(self.vars(extra)).unwrap()
    }

    fn error_variable(&self, extra: &[(&str, &str)]) -> String {
        self.with(extra).unwrap_err().variable
    }
}

#[test]
fn defaults() {
    let files = Files::new();
    let config = files.with(&[]).unwrap();
    assert_eq!(config.remote.user, "pi");
    assert_eq!(config.remote.host, "backup.lan");
    assert_eq!(config.remote.port, 22);
    assert_eq!(config.remote_dir, "/mnt/backup/data");
    assert!(config.borg.is_none());
    assert_eq!(config.pause_timeout, Duration::from_secs(60));
    assert_eq!(config.tz, Tz::UTC);
    assert!(!config.run_on_start);
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.volumes_dir, PathBuf::from("/var/lib/docker/volumes"));
    assert!(config.projects.is_none());
    assert!(config.metrics_addr.is_none());
}

#[test]
fn full() {
    let files = Files::new();
    let secret = files.dir.path().join("pass");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let config = files
        .with(&[
            ("BACKUP_REMOTE_PORT", "2222"),
            ("BACKUP_BORG_REPO", "/mnt/backup/borg"),
            ("BACKUP_BORG_PASSPHRASE_FILE", secret.to_str().unwrap()),
            ("BACKUP_KEEP_DAILY", "0"),
            ("BACKUP_SSH_OPTIONS", "Ciphers=aes128-ctr, Compression=no"),
            ("BACKUP_EXCLUDE", "*.tmp,cache/"),
            ("BACKUP_PROJECTS", "nextcloud"),
            ("BACKUP_PAUSE_TIMEOUT", "1500ms"),
            ("TZ", "Europe/Berlin"),
            ("BACKUP_RUN_ON_START", "true"),
            ("LOG_FORMAT", "json"),
            ("BACKUP_METRICS_ADDR", ":9102"),
        ])
        .unwrap();
    let borg = config.borg.unwrap();
    assert_eq!(borg.passphrase.unwrap().expose(), "s3cret");
    assert_eq!(borg.keep.daily, 0);
    assert_eq!(borg.keep.weekly, 4);
    assert_eq!(config.remote.port, 2222);
    assert_eq!(
        config.ssh_options,
        vec![
            ("Ciphers".to_string(), "aes128-ctr".to_string()),
            ("Compression".to_string(), "no".to_string())
        ]
    );
    assert_eq!(config.exclude, vec!["*.tmp", "cache/"]);
    assert_eq!(config.projects, Some(vec!["nextcloud".to_string()]));
    assert_eq!(config.pause_timeout, Duration::from_millis(1500));
    assert_eq!(config.tz, chrono_tz::Europe::Berlin);
    assert!(config.run_on_start);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.metrics_addr, Some("0.0.0.0:9102".parse().unwrap()));
}

#[test]
fn each_bad_input_names_its_variable() {
    let files = Files::new();
    let missing = files.path("nope");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("BACKUP_REMOTE", "")], "BACKUP_REMOTE"),
        (&[("BACKUP_REMOTE", "backup.lan")], "BACKUP_REMOTE"),
        (&[("BACKUP_REMOTE", "-oProxyCommand=x@h")], "BACKUP_REMOTE"),
        (&[("BACKUP_REMOTE_DIR", "")], "BACKUP_REMOTE_DIR"),
        (&[("BACKUP_REMOTE_DIR", "backup/data")], "BACKUP_REMOTE_DIR"),
        (&[("BACKUP_REMOTE_DIR", "/")], "BACKUP_REMOTE_DIR"),
        (&[("BACKUP_REMOTE_PORT", "70000")], "BACKUP_REMOTE_PORT"),
        (&[("BACKUP_REMOTE_PORT", "0")], "BACKUP_REMOTE_PORT"),
        (
            &[("BACKUP_SYNC_SCHEDULE", "61 * * * *")],
            "BACKUP_SYNC_SCHEDULE",
        ),
        (
            &[("BACKUP_SNAPSHOT_SCHEDULE", "weekly")],
            "BACKUP_SNAPSHOT_SCHEDULE",
        ),
        (
            &[("BACKUP_SNAPSHOT_SCHEDULE", "0 0 3 * * 0")],
            "BACKUP_SNAPSHOT_SCHEDULE",
        ),
        (
            &[("BACKUP_CHECK_SCHEDULE", "monthly")],
            "BACKUP_CHECK_SCHEDULE",
        ),
        (&[("BACKUP_PAUSE_TIMEOUT", "soon")], "BACKUP_PAUSE_TIMEOUT"),
        (&[("BACKUP_PAUSE_TIMEOUT", "0s")], "BACKUP_PAUSE_TIMEOUT"),
        (&[("BACKUP_RETRY_ATTEMPTS", "0")], "BACKUP_RETRY_ATTEMPTS"),
        (&[("BACKUP_RETRY_DELAY", "later")], "BACKUP_RETRY_DELAY"),
        (
            &[("BACKUP_BORG_REPO", "/r"), ("BACKUP_BORG_LOCK_WAIT", "x")],
            "BACKUP_BORG_LOCK_WAIT",
        ),
        (&[("BACKUP_SSH_KEY_FILE", &missing)], "BACKUP_SSH_KEY_FILE"),
        (
            &[("BACKUP_KNOWN_HOSTS_FILE", &missing)],
            "BACKUP_KNOWN_HOSTS_FILE",
        ),
        (&[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (&[("TZ", "Mars/Olympus")], "TZ"),
        (&[("BACKUP_KEEP_WEEKLY", "-1")], "BACKUP_KEEP_WEEKLY"),
        (&[("BACKUP_RUN_ON_START", "maybe")], "BACKUP_RUN_ON_START"),
        (
            &[("BACKUP_SSH_OPTIONS", "StrictHostKeyChecking=no")],
            "BACKUP_SSH_OPTIONS",
        ),
        (&[("BACKUP_SSH_OPTIONS", "Ciphers")], "BACKUP_SSH_OPTIONS"),
        (&[("BACKUP_PROJECTS", ",")], "BACKUP_PROJECTS"),
        (&[("BACKUP_ARCHIVE_PREFIX", "a b")], "BACKUP_ARCHIVE_PREFIX"),
        (
            &[("BACKUP_BORG_PASSPHRASE_FILE", &missing)],
            "BACKUP_BORG_PASSPHRASE_FILE",
        ),
    ];
    for (extra, variable) in cases {
        assert_eq!(&files.error_variable(extra), variable, "case {extra:?}");
    }
}

#[test]
fn key_readable_by_others_is_refused() {
    let files = Files::new();
    let key = files.path("id_ed25519");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = files.with(&[]).unwrap_err();
    assert_eq!(error.variable, "BACKUP_SSH_KEY_FILE");
    assert!(error.message.contains("0644"), "{error}");
}

#[test]
fn value_and_file_together_are_refused() {
    let files = Files::new();
    let key = files.path("known_hosts");
    let error = files
        .with(&[
            ("BACKUP_BORG_PASSPHRASE", "x"),
            ("BACKUP_BORG_PASSPHRASE_FILE", &key),
        ])
        .unwrap_err();
    assert_eq!(error.variable, "BACKUP_BORG_PASSPHRASE_FILE");
}

#[test]
fn retry_delays_double() {
    let retry = Retry {
        attempts: 4,
        delay: Duration::from_secs(10),
    };
    let waits: Vec<u64> = (2..=4).map(|a| retry.delay_before(a).as_secs()).collect();
    assert_eq!(waits, vec![10, 20, 40]);
}

#[test]
fn secret_is_not_printed() {
    let secret = Secret("hunter2".into());
    assert!(!format!("{secret:?}").contains("hunter2"));
}

/// A raw configuration from the given variables alone, read as the sidecar reads them.
fn raw(vars: &[(&str, &str)]) -> RawConfig {
    RawConfig::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

/// The variable a section refused; section results are not all `Debug`, so no `unwrap_err`.
fn refused<T>(result: Result<T, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => e.variable,
    }
}

#[test]
fn log_format_section() {
    assert_eq!(log_format(&raw(&[])), Ok(DEFAULT_LOG_FORMAT));
    assert_eq!(
        log_format(&raw(&[("LOG_FORMAT", " json ")])),
        Ok(LogFormat::Json)
    );
    assert_eq!(
        log_format(&raw(&[("LOG_FORMAT", "text")])),
        Ok(LogFormat::Text)
    );
    assert_eq!(
        refused(log_format(&raw(&[("LOG_FORMAT", "xml")]))),
        "LOG_FORMAT"
    );
}

#[test]
fn remote_section_defaults() {
    let files = Files::new();
    let section = remote_section(&files.raw(&[])).unwrap();
    assert_eq!(section.remote.port, DEFAULT_REMOTE_PORT);
    assert!(section.ssh_options.is_empty());

    // The default paths are only usable where the sidecar's mounts exist: accept either
    // outcome, as long as it is the default path that was tried.
    let mut vars = files.base();
    vars.retain(|(name, _)| !name.ends_with("_FILE"));
    match remote_section(&RawConfig::from_vars(vars.clone()).unwrap()) {
        Ok(section) => assert_eq!(section.ssh_key_file, Path::new(DEFAULT_SSH_KEY_FILE)),
        Err(e) => {
            assert_eq!(e.variable, "BACKUP_SSH_KEY_FILE");
            assert!(e.message.contains(DEFAULT_SSH_KEY_FILE), "{e}");
        }
    }
    vars.push(("BACKUP_SSH_KEY_FILE".into(), files.path("id_ed25519")));
    match remote_section(&RawConfig::from_vars(vars).unwrap()) {
        Ok(section) => assert_eq!(
            section.known_hosts_file,
            Path::new(DEFAULT_KNOWN_HOSTS_FILE)
        ),
        Err(e) => {
            assert_eq!(e.variable, "BACKUP_KNOWN_HOSTS_FILE");
            assert!(e.message.contains(DEFAULT_KNOWN_HOSTS_FILE), "{e}");
        }
    }
}

#[test]
fn remote_section_reads_each_variable() {
    let files = Files::new();
    let section = remote_section(&files.raw(&[
        ("BACKUP_REMOTE", "backup@fd00::1"),
        ("BACKUP_REMOTE_PORT", "2222"),
        ("BACKUP_SSH_OPTIONS", "Ciphers=aes128-ctr"),
    ]))
    .unwrap();
    assert_eq!(
        section.remote,
        Remote {
            user: "backup".into(),
            host: "fd00::1".into(),
            port: 2222
        }
    );
    assert_eq!(section.remote_dir, "/mnt/backup/data");
    assert_eq!(section.ssh_key_file, Path::new(&files.path("id_ed25519")));
    assert_eq!(
        section.known_hosts_file,
        Path::new(&files.path("known_hosts"))
    );
    assert_eq!(
        section.ssh_options,
        vec![("Ciphers".to_string(), "aes128-ctr".to_string())]
    );
}

#[test]
fn remote_section_bad_values_name_their_variable() {
    let files = Files::new();
    let missing = files.path("nope");
    for (name, value) in [
        ("BACKUP_REMOTE", "backup.lan"),
        ("BACKUP_REMOTE_PORT", "ssh"),
        ("BACKUP_REMOTE_DIR", "/a/../b"),
        ("BACKUP_SSH_KEY_FILE", missing.as_str()),
        ("BACKUP_KNOWN_HOSTS_FILE", missing.as_str()),
        ("BACKUP_SSH_OPTIONS", "Port=2222"),
    ] {
        let result = remote_section(&files.raw(&[(name, value)]));
        assert_eq!(refused(result), name, "{name}={value}");
    }
}

#[test]
fn borg_section_is_off_without_a_repository() {
    assert!(borg_section(&raw(&[])).unwrap().is_none());
    // The lock wait only matters to borg, so without a repository it is not read.
    assert!(
        borg_section(&raw(&[("BACKUP_BORG_LOCK_WAIT", "x")]))
            .unwrap()
            .is_none()
    );
}

#[test]
fn borg_section_defaults() {
    let borg = borg_section(&raw(&[("BACKUP_BORG_REPO", " /mnt/backup/borg ")]))
        .unwrap()
        .unwrap();
    assert_eq!(borg.repo, "/mnt/backup/borg");
    assert!(borg.passphrase.is_none());
    assert!(borg.archive_prefix.is_none());
    assert_eq!(
        borg.keep,
        Keep {
            daily: DEFAULT_KEEP_DAILY,
            weekly: DEFAULT_KEEP_WEEKLY,
            monthly: DEFAULT_KEEP_MONTHLY,
        }
    );
    assert_eq!(borg.lock_wait, DEFAULT_BORG_LOCK_WAIT);
}

#[test]
fn borg_section_reads_each_variable() {
    let borg = borg_section(&raw(&[
        ("BACKUP_BORG_REPO", "/r"),
        ("BACKUP_BORG_PASSPHRASE", "s3cret"),
        ("BACKUP_ARCHIVE_PREFIX", "nas-1"),
        ("BACKUP_KEEP_DAILY", "1"),
        ("BACKUP_KEEP_WEEKLY", "2"),
        ("BACKUP_KEEP_MONTHLY", "0"),
        ("BACKUP_BORG_LOCK_WAIT", "30s"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(borg.passphrase, Some(Secret::new("s3cret".into())));
    assert_eq!(borg.archive_prefix.as_deref(), Some("nas-1"));
    assert_eq!(
        borg.keep,
        Keep {
            daily: 1,
            weekly: 2,
            monthly: 0
        }
    );
    assert_eq!(borg.lock_wait, Duration::from_secs(30));
}

#[test]
fn borg_section_bad_values_name_their_variable() {
    // Retention and prefix are refused even while snapshots are off.
    for (name, value) in [
        ("BACKUP_KEEP_DAILY", "x"),
        ("BACKUP_KEEP_WEEKLY", "-1"),
        ("BACKUP_KEEP_MONTHLY", "1.5"),
        ("BACKUP_ARCHIVE_PREFIX", "-p"),
    ] {
        assert_eq!(refused(borg_section(&raw(&[(name, value)]))), name);
    }
    for (name, value) in [
        ("BACKUP_BORG_REPO", "-r"),
        ("BACKUP_BORG_REPO", "/my repo"),
        ("BACKUP_BORG_LOCK_WAIT", "0s"),
    ] {
        let mut vars = vec![("BACKUP_BORG_REPO", "/r")];
        vars.retain(|(n, _)| *n != name);
        vars.push((name, value));
        assert_eq!(refused(borg_section(&raw(&vars))), name, "{name}={value}");
    }
}

#[test]
fn schedule_section_defaults() {
    let section = schedule_section(&raw(&[])).unwrap();
    let cron = |value| parse_cron("test", value).unwrap();
    assert_eq!(section.sync_schedule, cron(DEFAULT_SYNC_SCHEDULE));
    assert_eq!(section.snapshot_schedule, cron(DEFAULT_SNAPSHOT_SCHEDULE));
    assert_eq!(section.check_schedule, cron(DEFAULT_CHECK_SCHEDULE));
    // The copy follows each snapshot.
    assert_eq!(section.copy_schedule, None);
    assert_eq!(section.tz, DEFAULT_TZ);
    assert_eq!(section.run_on_start, DEFAULT_RUN_ON_START);
}

#[test]
fn schedule_section_reads_each_variable() {
    let section = schedule_section(&raw(&[
        ("BACKUP_SYNC_SCHEDULE", "15 * * * *"),
        ("BACKUP_SNAPSHOT_SCHEDULE", "0 2 * * *"),
        ("BACKUP_CHECK_SCHEDULE", "0 5 * * 6"),
        ("BACKUP_COPY_SCHEDULE", "30 4 * * *"),
        ("TZ", "America/New_York"),
        ("BACKUP_RUN_ON_START", "Yes"),
    ]))
    .unwrap();
    let cron = |value| parse_cron("test", value).unwrap();
    assert_eq!(section.sync_schedule, cron("15 * * * *"));
    assert_eq!(section.snapshot_schedule, cron("0 2 * * *"));
    assert_eq!(section.check_schedule, cron("0 5 * * 6"));
    assert_eq!(section.copy_schedule, Some(cron("30 4 * * *")));
    assert_eq!(section.tz, chrono_tz::America::New_York);
    assert!(section.run_on_start);
}

#[test]
fn schedule_section_bad_values_name_their_variable() {
    for (name, value) in [
        ("BACKUP_SYNC_SCHEDULE", "@daily"),
        ("BACKUP_SNAPSHOT_SCHEDULE", "0 25 * * *"),
        ("BACKUP_CHECK_SCHEDULE", "0 4 1 * * *"),
        ("BACKUP_COPY_SCHEDULE", "after snapshots"),
        ("TZ", "CEST+2"),
        ("BACKUP_RUN_ON_START", "y"),
    ] {
        assert_eq!(
            refused(schedule_section(&raw(&[(name, value)]))),
            name,
            "{name}={value}"
        );
    }
}

#[test]
fn run_section_defaults() {
    let section = run_section(&raw(&[])).unwrap();
    assert_eq!(section.pause_timeout, DEFAULT_PAUSE_TIMEOUT);
    assert_eq!(
        section.retry,
        Retry {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            delay: DEFAULT_RETRY_DELAY,
        }
    );
    assert!(section.exclude.is_empty());
    assert!(section.pre_command.is_none());
    assert!(section.post_command.is_none());
    assert!(section.projects.is_none());
}

#[test]
fn run_section_reads_each_variable() {
    let section = run_section(&raw(&[
        ("BACKUP_PAUSE_TIMEOUT", "2m"),
        ("BACKUP_RETRY_ATTEMPTS", "1"),
        ("BACKUP_RETRY_DELAY", "500ms"),
        ("BACKUP_EXCLUDE", "*.tmp, ,cache/"),
        ("BACKUP_REMOTE_PRE_COMMAND", "mount /mnt/backup"),
        ("BACKUP_REMOTE_POST_COMMAND", "umount /mnt/backup"),
        ("BACKUP_PROJECTS", "nextcloud, immich"),
    ]))
    .unwrap();
    assert_eq!(section.pause_timeout, Duration::from_secs(120));
    assert_eq!(
        section.retry,
        Retry {
            attempts: 1,
            delay: Duration::from_millis(500),
        }
    );
    assert_eq!(section.exclude, vec!["*.tmp", "cache/"]);
    assert_eq!(section.pre_command.as_deref(), Some("mount /mnt/backup"));
    assert_eq!(section.post_command.as_deref(), Some("umount /mnt/backup"));
    assert_eq!(
        section.projects,
        Some(vec!["nextcloud".to_string(), "immich".to_string()])
    );
}

#[test]
fn run_section_bad_values_name_their_variable() {
    for (name, value) in [
        ("BACKUP_PAUSE_TIMEOUT", "60"),
        ("BACKUP_RETRY_ATTEMPTS", "0"),
        ("BACKUP_RETRY_ATTEMPTS", "three"),
        ("BACKUP_RETRY_DELAY", "0ms"),
        ("BACKUP_PROJECTS", " , "),
    ] {
        assert_eq!(
            refused(run_section(&raw(&[(name, value)]))),
            name,
            "{name}={value}"
        );
    }
}

#[test]
fn paths_section() {
    let defaults = paths(&raw(&[])).unwrap();
    assert_eq!(defaults.volumes_dir, Path::new(DEFAULT_VOLUMES_DIR));
    assert_eq!(defaults.state_dir, Path::new(DEFAULT_STATE_DIR));
    assert_eq!(defaults.host_root, None);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let set = paths(&raw(&[
        ("BACKUP_VOLUMES_DIR", "/host/volumes"),
        ("BACKUP_STATE_DIR", "/state"),
        ("BACKUP_HOST_ROOT", &root),
    ]))
    .unwrap();
    assert_eq!(set.volumes_dir, Path::new("/host/volumes"));
    assert_eq!(set.state_dir, Path::new("/state"));
    assert_eq!(set.host_root.as_deref(), Some(dir.path()));
    // Not there, a file, a relative path: the variable is named.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    for bad in ["/nonexistent/host", file.to_str().unwrap(), "host"] {
        let error = paths(&raw(&[("BACKUP_HOST_ROOT", bad)])).err().unwrap();
        assert_eq!(error.variable, "BACKUP_HOST_ROOT", "{bad}");
        assert!(error.to_string().contains("not a directory"), "{error}");
    }
}

#[test]
fn health_section_defaults_from_the_sync_schedule() {
    let every_other_day = parse_cron("T", DEFAULT_SYNC_SCHEDULE).unwrap();
    // 29th to 31st is the longest gap of "*/2" in the day-of-month field: two days.
    assert_eq!(
        longest_gap(&every_other_day),
        Duration::from_secs(2 * 86_400)
    );
    let daily = parse_cron("T", "0 3 * * *").unwrap();
    let section = health_section(&raw(&[]), &every_other_day, &daily).unwrap();
    assert_eq!(
        section.max_age,
        Duration::from_secs(4 * 86_400) + MAX_AGE_SLACK
    );
    // The copy's from the copies' schedule (the snapshots' unless BACKUP_COPY_SCHEDULE is set).
    assert_eq!(
        section.copy_max_age,
        Duration::from_secs(2 * 86_400) + MAX_AGE_SLACK
    );
    assert_eq!(section.progress_interval, DEFAULT_PROGRESS_INTERVAL);
    let hourly = parse_cron("T", "0 * * * *").unwrap();
    assert_eq!(
        health_section(&raw(&[]), &hourly, &hourly).unwrap().max_age,
        Duration::from_secs(2 * 3600) + MAX_AGE_SLACK
    );
    let weekly = parse_cron("T", "0 3 * * 0").unwrap();
    assert_eq!(longest_gap(&weekly), Duration::from_secs(7 * 86_400));
}

#[test]
fn health_section_reads_and_refuses() {
    let hourly = parse_cron("T", "0 * * * *").unwrap();
    let set = health_section(
        &raw(&[
            ("BACKUP_MAX_AGE", "36h"),
            ("BACKUP_PROGRESS_INTERVAL", "10s"),
            ("BACKUP_COPY_MAX_AGE", "3d"),
        ]),
        &hourly,
        &hourly,
    )
    .unwrap();
    assert_eq!(set.max_age, Duration::from_secs(36 * 3600));
    assert_eq!(set.copy_max_age, Duration::from_secs(3 * 86_400));
    assert_eq!(set.progress_interval, Duration::from_secs(10));
    for (var, value) in [
        ("BACKUP_MAX_AGE", "soon"),
        ("BACKUP_MAX_AGE", "0s"),
        ("BACKUP_COPY_MAX_AGE", "a while"),
        ("BACKUP_PROGRESS_INTERVAL", "often"),
    ] {
        match health_section(&raw(&[(var, value)]), &hourly, &hourly) {
            Err(e) => assert_eq!(e.variable, var),
            Ok(_) => panic!("{var}={value} was accepted"),
        }
    }
}

#[test]
fn metrics_addr_section() {
    assert_eq!(metrics_addr(&raw(&[])), Ok(None));
    for (value, addr) in [
        (":9102", "0.0.0.0:9102"),
        (" 127.0.0.1:9102 ", "127.0.0.1:9102"),
        ("[::]:9102", "[::]:9102"),
        ("[::1]:80", "[::1]:80"),
    ] {
        assert_eq!(
            metrics_addr(&raw(&[("BACKUP_METRICS_ADDR", value)])),
            Ok(Some(addr.parse().unwrap())),
            "{value}"
        );
    }
    for value in [
        "9102",
        ":",
        ":http",
        ":70000",
        ":0",
        "localhost:9102",
        "::1:9102",
        "127.0.0.1",
        "127.0.0.1:9102/metrics",
    ] {
        assert_eq!(
            refused(metrics_addr(&raw(&[("BACKUP_METRICS_ADDR", value)]))),
            "BACKUP_METRICS_ADDR",
            "{value}"
        );
    }
}

#[test]
fn the_first_section_at_fault_is_reported() {
    let files = Files::new();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("LOG_FORMAT", "xml"), ("BACKUP_REMOTE", "")],
            "LOG_FORMAT",
        ),
        (
            &[
                ("BACKUP_SSH_OPTIONS", "Ciphers"),
                ("BACKUP_KEEP_DAILY", "x"),
            ],
            "BACKUP_SSH_OPTIONS",
        ),
        (
            &[("BACKUP_ARCHIVE_PREFIX", "a b"), ("TZ", "Mars/Olympus")],
            "BACKUP_ARCHIVE_PREFIX",
        ),
        (
            &[
                ("BACKUP_BORG_REPO", "/r"),
                ("BACKUP_BORG_LOCK_WAIT", "x"),
                ("BACKUP_SYNC_SCHEDULE", "x"),
            ],
            "BACKUP_BORG_LOCK_WAIT",
        ),
        (
            &[("TZ", "Mars/Olympus"), ("BACKUP_SYNC_SCHEDULE", "x")],
            "TZ",
        ),
        (
            &[
                ("BACKUP_RUN_ON_START", "maybe"),
                ("BACKUP_PAUSE_TIMEOUT", "x"),
            ],
            "BACKUP_RUN_ON_START",
        ),
        (
            &[("BACKUP_PROJECTS", ","), ("BACKUP_RETRY_DELAY", "x")],
            "BACKUP_RETRY_DELAY",
        ),
    ];
    for (extra, variable) in cases {
        assert_eq!(&files.error_variable(extra), variable, "case {extra:?}");
    }
}

#[test]
fn notify_section_defaults() {
    let section = notify_section(&raw(&[])).unwrap();
    assert!(section.urls.is_empty());
    assert_eq!(section.on, DEFAULT_NOTIFY_ON);
    assert_eq!(section.on, NotifyOn::Failure);
    assert!(section.ca_file.is_none());
}

#[test]
fn notify_section_reads_each_variable() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, super::channel::TEST_CA_PEM).unwrap();
    let section = notify_section(&raw(&[
        (
            "BACKUP_NOTIFY_URLS",
            "ntfy://tk_abc@ntfy.sh/alerts, healthchecks://hc-ping.com/5d1f ,",
        ),
        ("BACKUP_NOTIFY_ON", " Always "),
        ("BACKUP_NOTIFY_CA_FILE", ca.to_str().unwrap()),
    ]))
    .unwrap();
    let shown: Vec<String> = section.urls.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        shown,
        vec!["ntfy://***@ntfy.sh/***", "healthchecks://hc-ping.com/***"]
    );
    assert_eq!(section.on, NotifyOn::Always);
    assert_eq!(section.ca_file, Some(ca));
    assert_eq!(
        notify_section(&raw(&[("BACKUP_NOTIFY_ON", "failure")]))
            .unwrap()
            .on,
        NotifyOn::Failure
    );
}

#[test]
fn notify_urls_may_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("urls");
    std::fs::write(&file, "gotify://push.lan/AppToken\n").unwrap();
    let section =
        notify_section(&raw(&[("BACKUP_NOTIFY_URLS_FILE", file.to_str().unwrap())])).unwrap();
    assert_eq!(section.urls.len(), 1);
    assert_eq!(section.urls[0].to_string(), "gotify://push.lan/***");
}

#[test]
fn notify_section_bad_values_name_their_variable() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("x.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (name, value) in [
        (
            "BACKUP_NOTIFY_URLS",
            "ntfy://ntfy.sh/alerts,telegram://bot/x",
        ),
        ("BACKUP_NOTIFY_URLS", "gotify://push.lan"),
        ("BACKUP_NOTIFY_ON", "sometimes"),
        ("BACKUP_NOTIFY_CA_FILE", "/nonexistent/ca.pem"),
        ("BACKUP_NOTIFY_CA_FILE", not_pem.to_str().unwrap()),
    ] {
        assert_eq!(
            refused(notify_section(&raw(&[(name, value)]))),
            name,
            "{name}={value}"
        );
    }
}

#[test]
fn a_bad_notify_url_is_named_without_its_secrets() {
    let error = match notify_section(&raw(&[(
        "BACKUP_NOTIFY_URLS",
        "ntfy://tk_Secret1@ntfy.sh/alerts, gotify://push.lan/Secret2/x?y=1, \
         smtp://me:Secret3@mail.lan/?to=a@b.c",
    )])) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert_eq!(error.variable, "BACKUP_NOTIFY_URLS");
    assert_eq!(
        error.message,
        "entry 2 of 3, gotify://push.lan/***/***?y=***: gotify takes no ?query"
    );
    // The README's example, word for word.
    let error = Files::new()
        .with(&[("BACKUP_NOTIFY_URLS", "ntfy://ntfy.sh")])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "configuration error: BACKUP_NOTIFY_URLS: entry 1 of 1, ntfy://ntfy.sh: ntfy wants \
         exactly one path segment, the topic: ntfy://host/topic"
    );
    let files = Files::new();
    let error = files
        .with(&[("BACKUP_NOTIFY_URLS", "smtp://me:Secret3@mail.lan/?to=a@b.c")])
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("Secret3"), "{shown}");
    assert!(
        shown.contains("entry 1 of 1, smtp://me:***@mail.lan/?to=a@b.c: smtp wants a sender"),
        "{shown}"
    );
}

#[test]
fn config_carries_notify_settings() {
    let files = Files::new();
    let config = files
        .with(&[
            ("BACKUP_NOTIFY_URLS", "uptimekuma://kuma.lan/api/push/tok"),
            ("BACKUP_NOTIFY_ON", "always"),
        ])
        .unwrap();
    assert_eq!(config.notify_urls.len(), 1);
    assert_eq!(config.notify_on, NotifyOn::Always);
    assert!(config.notify_ca_file.is_none());
    // Debug of the whole configuration shows no token.
    assert!(!format!("{config:?}").contains("/tok"));
    let config = files.with(&[]).unwrap();
    assert!(config.notify_urls.is_empty());
    assert_eq!(config.notify_on, DEFAULT_NOTIFY_ON);
}

#[test]
fn catch_up_and_link() {
    let files = Files::new();
    let config = files.with(&[]).unwrap();
    assert_eq!(config.catch_up, CatchUp::Capture);
    assert_eq!(config.staging_max, 1 << 30);
    assert_eq!(
        config.link,
        Link {
            compress: true,
            bwlimit: None
        }
    );

    let config = files
        .with(&[
            ("BACKUP_CATCH_UP", "network"),
            ("BACKUP_STAGING_MAX", "512MiB"),
            ("BACKUP_COMPRESS", "false"),
            ("BACKUP_BWLIMIT", "1.5m"),
        ])
        .unwrap();
    assert_eq!(config.catch_up, CatchUp::Network);
    assert_eq!(config.staging_max, 512 << 20);
    assert!(!config.link.compress);
    assert_eq!(config.link.bwlimit.as_deref(), Some("1.5m"));
    // A limit of 0 is rsync's "no limit".
    let config = files.with(&[("BACKUP_BWLIMIT", "0")]).unwrap();
    assert_eq!(config.link.bwlimit, None);

    for (value, bytes) in [
        ("0", 0),
        ("4096", 4096),
        ("2g", 2 << 30),
        ("1 GiB", 1 << 30),
        ("3K", 3 << 10),
        ("1t", 1 << 40),
    ] {
        let config = files.with(&[("BACKUP_STAGING_MAX", value)]).unwrap();
        assert_eq!(config.staging_max, bytes, "{value}");
    }
    for value in ["1.5G", "-1", "GiB", "10 apples", "99999999999999999999"] {
        assert_eq!(
            files.error_variable(&[("BACKUP_STAGING_MAX", value)]),
            "BACKUP_STAGING_MAX",
            "{value}"
        );
    }
    for value in ["fast", "-5", "1mm", "1.5x", "+3"] {
        assert_eq!(
            files.error_variable(&[("BACKUP_BWLIMIT", value)]),
            "BACKUP_BWLIMIT",
            "{value}"
        );
    }
    assert_eq!(
        files.error_variable(&[("BACKUP_CATCH_UP", "copy")]),
        "BACKUP_CATCH_UP"
    );
    assert_eq!(
        files.error_variable(&[("BACKUP_COMPRESS", "zstd")]),
        "BACKUP_COMPRESS"
    );
}

#[test]
fn remote_dir_may_end_with_the_host() {
    let files = Files::new();
    let config = files
        .with(&[
            ("BACKUP_REMOTE_DIR", "/mnt/backup/data/{host}/"),
            ("BACKUP_BORG_REPO", "/mnt/backup/borg"),
        ])
        .unwrap();
    assert!(config.per_host() && config.needs_host());
    assert_eq!(config.mirror_root, "/mnt/backup/data");
    let nas = config.clone().for_host("nas");
    assert_eq!(nas.remote_dir, "/mnt/backup/data/nas");
    assert_eq!(nas.mirror_root, "/mnt/backup/data");
    assert!(nas.per_host() && !nas.needs_host());
    assert_eq!(
        nas.borg.as_ref().unwrap().archive_prefix.as_deref(),
        Some("nas")
    );
    // A prefix that is set stays; a plain directory stays.
    let plain = files
        .with(&[
            ("BACKUP_BORG_REPO", "/mnt/backup/borg"),
            ("BACKUP_ARCHIVE_PREFIX", "media"),
        ])
        .unwrap()
        .for_host("nas");
    assert_eq!(plain.remote_dir, "/mnt/backup/data");
    assert!(!plain.per_host());
    assert_eq!(
        plain.borg.as_ref().unwrap().archive_prefix.as_deref(),
        Some("media")
    );
    for bad in ["/mnt/{host}/data", "/mnt/{hostname}", "/{host}", "/mnt/{x}"] {
        assert_eq!(
            files.error_variable(&[("BACKUP_REMOTE_DIR", bad)]),
            "BACKUP_REMOTE_DIR",
            "{bad}"
        );
    }
}
