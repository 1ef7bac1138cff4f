//! The whole compose project, not only its volumes: bind-mounted directories (seen through
//! `BACKUP_HOST_ROOT`, the host's root mounted read-only), the compose files, the `.env` and the
//! single files the services bind-mount; and `restore --project`, which brings all of it back on
//! a server that lost everything. Host paths here are real: the directories are made on the host
//! (these tests run there, as root, like the engine).

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::copy_targets::{CopyKind, CopyTarget};
use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The image of the compose test's app: it has python3 (its entrypoint is replaced).
const WEB_IMAGE: &str = "backup-sidecar-receivers:latest";

/// The compose file of the disaster test: one web server serving /srv, which holds a named
/// volume, a bind-mounted directory and a bind-mounted file; `.env` provides `GREETING`.
const COMPOSE_FILE: &str = r#"version: "2.4"
services:
  web:
    image: backup-sidecar-receivers:latest
    entrypoint: ["python3", "-m", "http.server", "8080", "--directory", "/srv"]
    init: true
    environment:
      - GREETING=${GREETING}
    labels:
      backup.enable: "true"
      bs-test: "1"
    volumes:
      - vol:/srv/vol
      - ./data:/srv/data
      - ./app.conf:/srv/app.conf:ro
volumes:
  vol:
    labels:
      bs-test: "1"
networks:
  default:
    labels:
      bs-test: "1"
"#;

/// Fetches `http://127.0.0.1:8080<argv[1]>` inside the app's container.
const FETCH: &str = "import sys, urllib.request\n\
    sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8080' + sys.argv[1], timeout=5)\
    .read().decode())";

/// The mirror (and archive) name of a bind-mounted host directory: `_bind-` and the path's
/// components joined by `-`, every byte outside `[A-Za-z0-9._]` written as `%XX`.
fn bind_name(path: &Path) -> String {
    let mut name = String::from("_bind");
    for component in path.components() {
        let std::path::Component::Normal(part) = component else {
            continue;
        };
        name.push('-');
        for &byte in part.as_bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'_' {
                name.push(byte as char);
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    name
}

/// A host path without its leading slash: where a project file sits under `files/` (and under
/// `--to-dir`).
fn relative(path: &Path) -> String {
    path.to_str().unwrap().trim_start_matches('/').to_string()
}

/// A directory on the host under `parent`, canonical (the path Docker and the sidecar see),
/// removed at the end whatever happens.
fn host_dir(parent: &str, prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .unwrap();
    let path = dir.path().canonicalize().unwrap();
    (dir, path)
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A file in the remote's mirror, if it is there.
fn mirror_file(remote: &Remote, path: &str) -> Option<String> {
    let out = docker_output(&[
        "exec",
        &remote.name,
        "cat",
        &format!("/backup/mirror/{path}"),
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The names of the mirrored bind directories.
fn mirrored_binds(env: &Env, remote: &Remote) -> Vec<String> {
    env.mirrored(remote)
        .into_iter()
        .filter(|n| n.starts_with("_bind-"))
        .collect()
}

/// The `fields.volume` of every event with this message.
fn volumes_of(container: &str, message: &str) -> Vec<String> {
    events_named(container, message)
        .iter()
        .map(|e| e["fields"]["volume"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The sidecar with the host's root mounted read-only at /host and `BACKUP_HOST_ROOT` set, as the
/// compose file runs it; `extra` as for [`Env::sidecar`].
fn host_root_sidecar(env: &Env, remote: &Remote, extra: &[(&str, &str)]) -> String {
    let mut vars = vec![("BACKUP_HOST_ROOT", "/host")];
    vars.extend_from_slice(extra);
    env.sidecar_with(remote, &vars, &["-v", "/:/host:ro"])
}

/// A compose project run with the real `docker-compose` (v1), `-p` given, the other options
/// (`-f FILE`) and the directory it runs in as a user would give them. Dropping it takes the
/// project down, volumes included, even if its directory is gone.
struct Compose {
    project: String,
    /// Where compose runs.
    cwd: PathBuf,
    /// Options before the command, such as `-f sub/compose.yml`.
    options: Vec<String>,
}

impl Compose {
    /// The project with its compose file given as an absolute `-f`, run from `/`.
    fn with_file(project: &str, file: &Path) -> Compose {
        Compose {
            project: project.to_string(),
            cwd: PathBuf::from("/"),
            options: vec!["-f".into(), path_str(file).into()],
        }
    }

    fn command(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .args(&self.options)
            .args(args)
            .current_dir(&self.cwd)
            // The project's `.env` must provide it, not the test's environment.
            .env_remove("GREETING")
            .output()
            .expect("docker-compose runs (the Debian package, /usr/bin/docker-compose)")
    }

    fn run(&self, args: &[&str]) {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "docker-compose {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The id of the service's one container.
    fn container(&self, service: &str) -> String {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={service}");
        let ids = docker(&["ps", "-q", "--filter", &project, "--filter", &service]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        assert_eq!(ids.len(), 1, "one running {service} container: {ids:?}");
        ids[0].to_string()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if self.cwd.exists() {
            self.command(&["down", "-v", "--remove-orphans", "-t", "1"]);
        }
        let label = format!("label=com.docker.compose.project={}", self.project);
        let ids = docker_output(&["ps", "-aq", "--filter", &label]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            docker_output(&["rm", "-f", "-v", id]);
        }
        docker_output(&["volume", "rm", "-f", &format!("{}_vol", self.project)]);
        docker_output(&["network", "rm", &format!("{}_default", self.project)]);
    }
}

/// Writes `page` into the named volume's `page.txt` through the web container.
fn write_vol_page(web: &str, page: &str) {
    let script = "printf %s \"$1\" > /srv/vol/page.txt";
    docker(&["exec", web, "sh", "-c", script, "sh", page]);
}

/// What the app shows: its HTTP answers for these paths and its `GREETING`.
fn served(web: &str, paths: &[&str]) -> Vec<Option<String>> {
    let mut seen: Vec<Option<String>> = paths
        .iter()
        .map(|path| {
            let out = docker_output(&["exec", web, "python3", "-c", FETCH, path]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect();
    let greeting = docker_output(&["exec", web, "printenv", "GREETING"]);
    seen.push(
        greeting
            .status
            .success()
            .then(|| String::from_utf8_lossy(&greeting.stdout).trim().to_string()),
    );
    seen
}

/// Waits until the app serves `expected` (see [`served`]); panics with what it last saw.
fn wait_serving(web: &str, paths: &[&str], expected: &[Option<String>], timeout: Duration) {
    let started = Instant::now();
    loop {
        let seen = served(web, paths);
        if seen == expected {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "the app does not serve what it did: it serves {seen:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The disaster tests' project, up and serving: a compose file, `.env`, a config file and a data
/// directory on the host, and a named volume.
struct Project {
    _root_guard: tempfile::TempDir,
    root: PathBuf,
    app_dir: PathBuf,
    compose_file: PathBuf,
    env_file: PathBuf,
    conf_file: PathBuf,
    data_dir: PathBuf,
    greeting: String,
    conf: String,
    data_page: String,
    nested: &'static str,
    vol_page: String,
    volume: String,
    compose: Compose,
    /// What the app serves, and what it must serve (see [`served`]).
    paths: [&'static str; 3],
    expected: Vec<Option<String>>,
}

fn project_up(env: &Env, project: &str) -> Project {
    // The project on the host: compose file, .env, a config file, a data directory.
    let (_root_guard, root) = host_dir("/tmp", "bst-project-");
    let app_dir = root.join("app");
    let compose_file = app_dir.join("docker-compose.yml");
    let env_file = app_dir.join(".env");
    let conf_file = app_dir.join("app.conf");
    let data_dir = app_dir.join("data");
    let greeting = format!("hello-from-{project}");
    let conf = format!("# the app's configuration\nname = {project}\n");
    let data_page = format!("bind page of {project}\n");
    let nested = "nested in the bind directory\n";
    let vol_page = format!("volume page of {project}\n");
    write(&compose_file, COMPOSE_FILE);
    write(&env_file, &format!("GREETING={greeting}\n"));
    write(&conf_file, &conf);
    write(&data_dir.join("page.txt"), &data_page);
    write(&data_dir.join("sub/nested.txt"), nested);
    let volume = format!("{project}_vol");
    env.track_volume(&volume);
    let compose = Compose::with_file(project, &compose_file);
    compose.run(&["up", "-d"]);
    let web = compose.container("web");
    write_vol_page(&web, &vol_page);
    let paths = ["/vol/page.txt", "/data/page.txt", "/app.conf"];
    let expected = vec![
        Some(vol_page.clone()),
        Some(data_page.clone()),
        Some(conf.clone()),
        Some(greeting.clone()),
    ];
    wait_serving(&web, &paths, &expected, Duration::from_secs(30));
    Project {
        _root_guard,
        root,
        app_dir,
        compose_file,
        env_file,
        conf_file,
        data_dir,
        greeting,
        conf,
        data_page,
        nested,
        vol_page,
        volume,
        compose,
        paths,
        expected,
    }
}

#[test]
fn bind_names_escape_every_byte_outside_the_safe_set() {
    assert_eq!(
        bind_name(Path::new("/srv/my-app/data")),
        "_bind-srv-my%2Dapp-data"
    );
    assert_eq!(bind_name(Path::new("/tmp/x_y/d")), "_bind-tmp-x_y-d");
    assert_eq!(bind_name(Path::new("/a b/c.d/é")), "_bind-a%20b-c.d-%C3%A9");
}

#[test]
fn a_dead_server_comes_back_with_one_restore_per_project() {
    require_image(WEB_IMAGE);
    let env = Env::new("disaster");
    let project = env.name.clone();
    let remote = env.remote();

    let p = project_up(&env, &project);

    // The backup.
    let sidecar = host_root_sidecar(&env, &remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let archive = run["fields"]["archive"].as_str().unwrap_or("").to_string();
    assert!(!archive.is_empty(), "a snapshot was made: {run}");
    let bind = bind_name(&p.data_dir);
    let files = format!("_project-{project}/files/{}", relative(&p.app_dir));
    let synced = volumes_of(&sidecar, "volume synced");
    assert!(synced.contains(&p.volume), "{synced:?}");
    assert!(synced.contains(&bind), "{synced:?}");
    // Only the directory is a bind directory; the single file is one of the project's files.
    assert_eq!(mirrored_binds(&env, &remote), vec![bind.clone()]);
    let in_mirror = [
        (format!("{}/page.txt", p.volume), p.vol_page.clone()),
        (format!("{bind}/page.txt"), p.data_page.clone()),
        (format!("{bind}/sub/nested.txt"), p.nested.to_string()),
        (
            format!("{files}/docker-compose.yml"),
            COMPOSE_FILE.to_string(),
        ),
        (
            format!("{files}/.env"),
            format!("GREETING={}\n", p.greeting),
        ),
        (format!("{files}/app.conf"), p.conf.clone()),
    ];
    for (path, content) in &in_mirror {
        assert_eq!(
            mirror_file(&remote, path).as_deref(),
            Some(content.as_str()),
            "mirror {path}"
        );
    }
    let manifest = mirror_file(&remote, &format!("_project-{project}/manifest.json"))
        .expect("the project's manifest is in the mirror");
    serde_json::from_str::<Value>(&manifest)
        .unwrap_or_else(|e| panic!("the manifest is JSON: {e}: {manifest}"));
    let items = env.archive_items(&remote, &archive);
    for path in in_mirror
        .iter()
        .map(|(p, _)| p.clone())
        .chain([format!("_project-{project}/manifest.json")])
    {
        assert!(
            items.contains(&path),
            "{path} is not in archive {archive}: {items:?}"
        );
    }
    assert_eq!(
        env.archive_file(&remote, &archive, &format!("{files}/app.conf")),
        p.conf
    );
    assert_eq!(
        env.archive_file(&remote, &archive, &format!("{bind}/page.txt")),
        p.data_page
    );

    // The disaster: containers, volume, project directory and sidecar are gone.
    p.compose.run(&["down", "-t", "1"]);
    docker(&["volume", "rm", &p.volume]);
    std::fs::remove_dir_all(&p.root).unwrap();
    docker(&["rm", "-f", "-v", &sidecar]);
    assert!(!p.root.exists());
    assert!(
        !docker_output(&["volume", "inspect", &p.volume])
            .status
            .success()
    );

    // A fresh sidecar with the same key, one restore, compose up.
    let t0 = Instant::now();
    let sidecar = host_root_sidecar(&env, &remote, &[("BACKUP_RUN_ON_START", "false")]);
    let sidecar_started = t0.elapsed();
    let said = restore(
        &sidecar,
        &["--project", &project, "--from", "latest", "--yes"],
    )
    .events;
    let restore_done = t0.elapsed();
    let done: Vec<&Value> = said
        .iter()
        .filter(|e| message(e) == "project restored")
        .collect();
    assert_eq!(done.len(), 1, "one `project restored`: {said:?}");
    assert_eq!(
        done[0]["fields"]["project"],
        project.as_str(),
        "{}",
        done[0]
    );
    assert!(done[0]["fields"]["seconds"].is_number(), "{}", done[0]);
    let restored = said
        .iter()
        .filter(|e| message(e) == "volume restored")
        .count();
    assert!(
        restored >= 2,
        "the volume and the bind directory at least: {said:?}"
    );
    // Everything is back where it was on the host.
    assert_eq!(read(&p.compose_file), COMPOSE_FILE);
    assert_eq!(read(&p.env_file), format!("GREETING={}\n", p.greeting));
    assert_eq!(read(&p.conf_file), p.conf);
    assert_eq!(read(&p.data_dir.join("page.txt")), p.data_page);
    assert_eq!(read(&p.data_dir.join("sub/nested.txt")), p.nested);
    assert!(
        docker_output(&["volume", "inspect", &p.volume])
            .status
            .success()
    );

    p.compose.run(&["up", "-d"]);
    let compose_up = t0.elapsed();
    let web = p.compose.container("web");
    wait_serving(&web, &p.paths, &p.expected, Duration::from_secs(60));
    let serving = t0.elapsed();
    println!(
        "disaster recovery of project {project} (seconds from the fresh sidecar's start):\n\
         \x20 sidecar started   {:6.1}\n\
         \x20 restore done      {:6.1}\n\
         \x20 compose up done   {:6.1}\n\
         \x20 app serving       {:6.1}",
        sidecar_started.as_secs_f64(),
        restore_done.as_secs_f64(),
        compose_up.as_secs_f64(),
        serving.as_secs_f64()
    );

    // The same project elsewhere: a dry run writes nothing, --to-dir puts everything under DIR.
    let (_elsewhere_guard, elsewhere) = host_dir("/tmp", "bst-elsewhere-");
    restore(
        &sidecar,
        &[
            "--project",
            &project,
            "--from",
            &archive,
            "--to-dir",
            path_str(&elsewhere),
            "--dry-run",
        ],
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "a dry run writes nothing"
    );
    restore(
        &sidecar,
        &[
            "--project",
            &project,
            "--from",
            &archive,
            "--to-dir",
            path_str(&elsewhere),
            "--yes",
        ],
    );
    let there = elsewhere.join(relative(&p.app_dir));
    assert_eq!(read(&there.join("docker-compose.yml")), COMPOSE_FILE);
    assert_eq!(
        read(&there.join(".env")),
        format!("GREETING={}\n", p.greeting)
    );
    assert_eq!(read(&there.join("app.conf")), p.conf);
    assert_eq!(read(&there.join("data/page.txt")), p.data_page);
    assert_eq!(read(&there.join("data/sub/nested.txt")), p.nested);
    assert_eq!(
        read(&elsewhere.join("_volumes").join(&p.volume).join("page.txt")),
        p.vol_page
    );
    // The app was left alone.
    wait_serving(&web, &p.paths, &p.expected, Duration::from_secs(30));
}

/// The Pi is gone too (burnt with the house): a new remote gets the repository back from the
/// second copy, the guard is set up on it, and a fresh server brings the project back with one
/// restore, as the README's "When the Pi is gone" says.
#[test]
fn with_the_pi_gone_too_the_project_comes_back_from_the_copy() {
    require_image(WEB_IMAGE);
    let env = Env::new("pi-gone");
    let project = env.name.clone();
    let remote = env.remote();
    let copy: CopyTarget = env.copy_target(&remote, CopyKind::Sftp);
    let p = project_up(&env, &project);
    let sidecar = host_root_sidecar(&env, &remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let archive = run["fields"]["archive"].as_str().unwrap().to_string();
    let copied = wait_for_events(&sidecar, "copy finished", 1, RUN_TIMEOUT).remove(0);
    assert_eq!(copied["fields"]["outcome"], "success", "{copied}");
    assert_eq!(copied["fields"]["newest_archive"], archive.as_str());

    // Everything is gone but the copy: the server's project, volume and sidecar, and the Pi.
    p.compose.run(&["down", "-t", "1"]);
    docker(&["volume", "rm", &p.volume]);
    std::fs::remove_dir_all(&p.root).unwrap();
    docker(&["rm", "-f", "-v", &sidecar]);
    docker(&["rm", "-f", "-v", &remote.name]);

    // A new Pi: the remote image with a new host key; the repository fetched from the copy with
    // the owner's rclone config (kept off the Pi), then the guard's setup with the passphrase.
    let t0 = Instant::now();
    let new_pi = env.remote();
    env.on_remote(&new_pi, "rm -rf /backup/borg");
    env.fetch_copy_to(&copy, &new_pi, "/backup/borg");
    let fetched = t0.elapsed();
    env.on_remote(
        &new_pi,
        &format!("printf %s '{PASSPHRASE}' | {GUARD} --setup > /dev/null"),
    );
    assert_eq!(env.archives(&new_pi), vec![archive.clone()]);
    let guarded = t0.elapsed();

    // A fresh server: a new sidecar with the same key, one restore, compose up.
    let sidecar = host_root_sidecar(&env, &new_pi, &[("BACKUP_RUN_ON_START", "false")]);
    restore(
        &sidecar,
        &["--project", &project, "--from", "latest", "--yes"],
    );
    let restored = t0.elapsed();
    assert_eq!(read(&p.compose_file), COMPOSE_FILE);
    assert_eq!(read(&p.conf_file), p.conf);
    p.compose.run(&["up", "-d"]);
    let web = p.compose.container("web");
    wait_serving(&web, &p.paths, &p.expected, Duration::from_secs(60));
    let serving = t0.elapsed();
    println!(
        "the Pi and the server gone; project {project} back from the copy (seconds from the new \
         Pi's start):\n\
         \x20 repository fetched from the copy  {:6.1}\n\
         \x20 guard set up, archives listed     {:6.1}\n\
         \x20 project restored on a new server  {:6.1}\n\
         \x20 app serving                       {:6.1}",
        fetched.as_secs_f64(),
        guarded.as_secs_f64(),
        restored.as_secs_f64(),
        serving.as_secs_f64()
    );
}

#[test]
fn bind_mounts_follow_the_container_labels() {
    let env = Env::new("binds");
    let remote = env.remote();
    let project = env.project_label();
    let (_root_guard, root) = host_dir("/tmp", "bst-binds-");
    let x = root.join("x");
    let y = root.join("y");
    let z = root.join("z");
    write(&x.join("keep.txt"), "keep\n");
    write(&x.join("junk.tmp"), "junk\n");
    write(&x.join("sub/deep.txt"), "deep\n");
    write(&x.join("sub/junk2.tmp"), "junk\n");
    write(&y.join("secret.txt"), "not to be backed up\n");
    write(&z.join("doomed.txt"), "soon gone\n");
    // A directory under /run: the host's runtime state, never backed up.
    let (_run_guard, run_dir) = host_dir("/run", "bst-binds-");
    write(&run_dir.join("state"), "runtime\n");

    let x_mount = format!("{}:/x", x.display());
    let run_mount = format!("{}:/r", run_dir.display());
    env.container(
        "a",
        &[
            "--label",
            &project,
            "--label",
            "backup.enable=true",
            "--label",
            "backup.exclude=*.tmp",
            "-v",
            &x_mount,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            &run_mount,
        ],
        APP_IMAGE,
        &["sleep", "infinity"],
    );
    let y_mount = format!("{}:/y", y.display());
    env.container(
        "b",
        &[
            "--label",
            &project,
            "--label",
            "backup.enable=false",
            "-v",
            &y_mount,
        ],
        APP_IMAGE,
        &["sleep", "infinity"],
    );
    let sidecar = host_root_sidecar(&env, &remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let archive = run["fields"]["archive"].as_str().unwrap_or("").to_string();
    assert!(!archive.is_empty(), "{run}");

    // X only: not Y (its container opted out), not the socket, not /run.
    let bx = bind_name(&x);
    assert_eq!(mirrored_binds(&env, &remote), vec![bx.clone()]);
    let synced = volumes_of(&sidecar, "volume synced");
    assert!(synced.contains(&bx), "{synced:?}");
    assert_eq!(
        mirror_file(&remote, &format!("{bx}/keep.txt")).as_deref(),
        Some("keep\n")
    );
    assert_eq!(
        mirror_file(&remote, &format!("{bx}/sub/deep.txt")).as_deref(),
        Some("deep\n")
    );
    // The container's backup.exclude applies to its bind.
    let excluded = env.on_remote(
        &remote,
        &format!("find '/backup/mirror/{bx}' -name '*.tmp'"),
    );
    assert!(
        excluded.trim().is_empty(),
        "excluded files mirrored: {excluded}"
    );
    let items = env.archive_items(&remote, &archive);
    assert!(items.contains(&format!("{bx}/keep.txt")), "{items:?}");
    assert!(
        !items.iter().any(|i| i.ends_with(".tmp")),
        "excluded files archived: {items:?}"
    );
    for item in &items {
        assert!(
            !item.contains("docker.sock")
                && !item.starts_with(&bind_name(&y))
                && !item.starts_with(&bind_name(&run_dir)),
            "{item} must not be archived"
        );
    }
    let archives = env.archives(&remote).len();

    // A bind source that vanished fails alone: X still syncs, the run fails, no snapshot.
    let z_mount = format!("{}:/z", z.display());
    env.container(
        "c",
        &[
            "--label",
            &project,
            "--label",
            "backup.enable=true",
            "-v",
            &z_mount,
        ],
        APP_IMAGE,
        &["sleep", "infinity"],
    );
    std::fs::remove_dir_all(&z).unwrap();
    write(&x.join("second.txt"), "second run\n");
    let run = run_now(&sidecar, 1, RUN_TIMEOUT);
    assert_ne!(run["fields"]["outcome"], "success", "{run}");
    let bz = bind_name(&z);
    let failed = volumes_of(&sidecar, "volume failed");
    assert!(failed.contains(&bz), "{failed:?}");
    assert!(!failed.contains(&bx), "{failed:?}");
    let synced = volumes_of(&sidecar, "volume synced");
    assert_eq!(
        synced.iter().filter(|v| **v == bx).count(),
        2,
        "X synced in both runs: {synced:?}"
    );
    assert_eq!(
        mirror_file(&remote, &format!("{bx}/second.txt")).as_deref(),
        Some("second run\n")
    );
    assert_eq!(
        env.archives(&remote).len(),
        archives,
        "no snapshot after a failed source"
    );
}

#[test]
fn bind_mounts_need_the_host_root() {
    let env = Env::new("noroot");
    let remote = env.remote();
    let project = env.project_label();
    let (_root_guard, root) = host_dir("/tmp", "bst-noroot-");
    let dir = root.join("d");
    write(&dir.join("file.txt"), "data\n");
    let volume = env.volume("data", &[&project]);
    let volume_mount = format!("{volume}:/data");
    let dir_mount = format!("{}:/d", dir.display());
    env.container(
        "app",
        &[
            "--label",
            &project,
            "--label",
            "backup.enable=true",
            "-v",
            &volume_mount,
            "-v",
            &dir_mount,
        ],
        APP_IMAGE,
        &["sleep", "infinity"],
    );

    // Without BACKUP_HOST_ROOT: the volume is backed up, the bind directory skipped out loud.
    let sidecar = env.sidecar(&remote, &[]);
    let run = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let path = dir.to_str().unwrap();
    let warned = events(&sidecar).into_iter().any(|e| {
        let line = e.to_string();
        e["level"] == "WARN" && line.contains("BACKUP_HOST_ROOT") && line.contains(path)
    });
    let logs = docker(&["logs", &sidecar]);
    assert!(
        warned,
        "a WARN line names BACKUP_HOST_ROOT and {path}:\n{logs}"
    );
    let mirrored = env.mirrored(&remote);
    assert!(mirrored.contains(&volume), "{mirrored:?}");
    assert!(
        !mirrored.iter().any(|n| n.starts_with("_bind-")),
        "{mirrored:?}"
    );

    // BACKUP_HOST_ROOT that is not a directory: exit 2 at start, one line naming it.
    for value in ["/nonexistent", "/etc/hostname"] {
        let mut args = vec![
            "run".to_string(),
            "--rm".into(),
            "--label".into(),
            TEST_LABEL.into(),
        ];
        args.extend(env.sidecar_args(&env.sidecar_env(&remote, &[("BACKUP_HOST_ROOT", value)])));
        args.push(SIDECAR_IMAGE.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = docker_output(&args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "BACKUP_HOST_ROOT={value}: {said}"
        );
        let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "BACKUP_HOST_ROOT={value}: one line, got {said}"
        );
        assert!(
            lines[0].contains("BACKUP_HOST_ROOT"),
            "BACKUP_HOST_ROOT={value}: {:?} does not name it",
            lines[0]
        );
    }
}

/// Every entry at and below `root`, one line each, sorted: path, type, mode, owner, size, time to
/// the nanosecond, and a file's content or a link's target.
fn tree(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, path: &Path, lines: &mut Vec<String>) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let what = if meta.is_dir() {
            "dir".to_string()
        } else if meta.is_symlink() {
            format!("link -> {}", std::fs::read_link(path).unwrap().display())
        } else {
            format!("file {:?}", read(path))
        };
        let name = path.strip_prefix(root).unwrap().display().to_string();
        lines.push(format!(
            "./{name} mode {:o} owner {}:{} size {} mtime {}.{:09} {what}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            if meta.is_dir() { 0 } else { meta.size() },
            meta.mtime(),
            meta.mtime_nsec(),
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(root, &entry.unwrap().path(), lines);
            }
        }
    }
    let mut lines = Vec::new();
    walk(root, root, &mut lines);
    lines.sort();
    lines
}

/// Gives `path` an owner, a mode and a time of its own (to the nanosecond), as a user's files
/// have, so that a restore that loses any of them shows.
fn own(path: &Path, owner: &str, mode: u32, time: &str) {
    use std::os::unix::fs::PermissionsExt;
    let status = Command::new("chown")
        .args(["-h", owner])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let status = Command::new("touch")
        .args(["-h", "-d", time])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The override file of the compose v1 case that has one: the greeting the app shows comes
/// from it, so an app started without it shows another; it names an env file, without which
/// compose does not start the app.
const OVERRIDE_FILE: &str = r#"version: "2.4"
services:
  web:
    env_file: web.env
    environment:
      - GREETING=overridden-${GREETING}
"#;

/// One way of running a compose v1 project (Debian's docker-compose 1.29.2), each of which
/// writes the project's file paths relative to where compose ran.
struct V1Case {
    /// Suffix of the project's name.
    name: &'static str,
    /// Options before the command, as the user typed them in the project's top directory.
    options: &'static [&'static str],
    /// Where the compose file, `.env`, the config and the data directory are, below the top.
    dir: &'static str,
    /// The compose file's name in `dir`.
    file: &'static str,
    /// Whether `dir` has a `docker-compose.override.yml`.
    with_override: bool,
}

const V1_CASES: &[V1Case] = &[
    V1Case {
        name: "plain",
        options: &[],
        dir: "",
        file: "docker-compose.yml",
        with_override: false,
    },
    V1Case {
        name: "sub",
        options: &["-f", "sub/compose.yml"],
        dir: "sub",
        file: "compose.yml",
        with_override: false,
    },
    V1Case {
        name: "override",
        options: &[],
        dir: "",
        file: "docker-compose.yml",
        with_override: true,
    },
];

#[test]
fn compose_v1_projects_come_back_with_their_compose_files() {
    require_image(WEB_IMAGE);
    let env = Env::new("v1");
    let remote = env.remote();
    let (_root_guard, root) = host_dir("/tmp", "bst-v1-");
    let paths = ["/vol/page.txt", "/data/page.txt", "/app.conf"];
    struct Up {
        compose: Compose,
        top: PathBuf,
        expected: Vec<Option<String>>,
        before: Vec<String>,
    }
    let mut ups = Vec::new();
    for case in V1_CASES {
        let project = format!("{}-{}", env.name, case.name);
        let top = root.join(case.name);
        let dir = top.join(case.dir);
        let conf = format!("name = {project}\n");
        let data_page = format!("bind page of {project}\n");
        let vol_page = format!("volume page of {project}\n");
        let greeting = format!("hello-{}", case.name);
        write(&dir.join(case.file), COMPOSE_FILE);
        write(&dir.join(".env"), &format!("GREETING={greeting}\n"));
        write(&dir.join("app.conf"), &conf);
        write(&dir.join("data/page.txt"), &data_page);
        write(&dir.join("data/sub/nested.txt"), "nested\n");
        if case.with_override {
            write(&dir.join("docker-compose.override.yml"), OVERRIDE_FILE);
            write(&dir.join("web.env"), "FROM_ENV_FILE=1\n");
        }
        // Owners, modes and times of their own, deepest first (a directory's time last).
        own(
            &dir.join(case.file),
            "0:0",
            0o644,
            "2021-03-04 05:06:07.123456789",
        );
        own(
            &dir.join(".env"),
            "1000:1000",
            0o600,
            "2021-03-04 05:06:08.5",
        );
        own(&dir.join("app.conf"), "33:33", 0o640, "2021-03-04 05:06:09");
        own(
            &dir.join("data/sub/nested.txt"),
            "1000:100",
            0o664,
            "2022-01-01 00:00:01",
        );
        own(
            &dir.join("data/page.txt"),
            "33:33",
            0o644,
            "2022-01-01 00:00:02",
        );
        own(
            &dir.join("data/sub"),
            "1000:100",
            0o2775,
            "2022-01-01 00:00:03",
        );
        own(&dir.join("data"), "33:33", 0o750, "2022-01-01 00:00:04");
        if case.with_override {
            own(
                &dir.join("docker-compose.override.yml"),
                "1000:1000",
                0o644,
                "2021-03-04 05:06:10",
            );
            own(&dir.join("web.env"), "0:0", 0o600, "2021-03-04 05:06:11");
        }
        if !case.dir.is_empty() {
            own(&dir, "0:0", 0o755, "2020-05-05 05:05:05");
        }
        own(&top, "0:0", 0o755, "2020-06-06 06:06:06.000000006");
        env.track_volume(&format!("{project}_vol"));
        let compose = Compose {
            project: project.clone(),
            cwd: top.clone(),
            options: case.options.iter().map(|o| o.to_string()).collect(),
        };
        // The tree is read before compose runs: nothing compose does may change it either.
        let before = tree(&top);
        compose.run(&["up", "-d"]);
        let web = compose.container("web");
        write_vol_page(&web, &vol_page);
        let shown = if case.with_override {
            format!("overridden-{greeting}")
        } else {
            greeting
        };
        let expected = vec![Some(vol_page), Some(data_page), Some(conf), Some(shown)];
        wait_serving(&web, &paths, &expected, Duration::from_secs(30));
        assert_eq!(
            tree(&top),
            before,
            "compose changed project {project}'s directory"
        );
        ups.push(Up {
            compose,
            top,
            expected,
            before,
        });
    }
    let projects: Vec<&str> = ups.iter().map(|u| u.compose.project.as_str()).collect();
    let scope = projects.join(",");

    // What plan and check say each project keeps, before a run.
    let sidecar = host_root_sidecar(
        &env,
        &remote,
        &[
            ("BACKUP_PROJECTS", &scope),
            ("BACKUP_RUN_ON_START", "false"),
        ],
    );
    let plan = docker(&["exec", &sidecar, "backup-sidecar", "plan"]);
    let check = docker(&["exec", &sidecar, "backup-sidecar", "check"]);
    assert!(!plan.contains("warning"), "{plan}");
    assert!(!check.contains("WARN  plan"), "{check}");
    for (case, up) in V1_CASES.iter().zip(&ups) {
        let dir = up.top.join(case.dir);
        let mut kept = vec![dir.join(".env"), dir.join("app.conf"), dir.join(case.file)];
        if case.with_override {
            kept.push(dir.join("docker-compose.override.yml"));
            kept.push(dir.join("web.env"));
        }
        let kept: Vec<&str> = kept.iter().map(|p| path_str(p)).collect();
        let project = &up.compose.project;
        let line = check
            .lines()
            .find(|l| l.starts_with(&format!("ok    project {project}: keeps ")))
            .unwrap_or_else(|| panic!("check lists project {project}'s files: {check}"));
        let plan_line = plan
            .lines()
            .find(|l| l.contains(&format!("files of project {project} ")))
            .unwrap_or_else(|| panic!("plan lists project {project}'s files: {plan}"));
        for file in &kept {
            assert!(line.contains(file), "check keeps {file}: {line}");
            assert!(plan_line.contains(file), "plan keeps {file}: {plan_line}");
        }
    }

    let run = run_now(&sidecar, 0, RUN_TIMEOUT);
    assert_eq!(run["fields"]["outcome"], "success", "{run}");
    let warnings: Vec<Value> = events(&sidecar)
        .into_iter()
        .filter(|e| e["level"] == "WARN")
        .collect();
    assert!(warnings.is_empty(), "the run warns: {warnings:?}");

    // The disaster: every project's containers, volume and directory, and the sidecar.
    for up in &ups {
        up.compose.run(&["down", "-t", "1"]);
        docker(&["volume", "rm", &format!("{}_vol", up.compose.project)]);
    }
    std::fs::remove_dir_all(&root).unwrap();
    docker(&["rm", "-f", "-v", &sidecar]);

    let sidecar = host_root_sidecar(
        &env,
        &remote,
        &[
            ("BACKUP_PROJECTS", &scope),
            ("BACKUP_RUN_ON_START", "false"),
        ],
    );
    for up in &ups {
        let project = &up.compose.project;
        restore(
            &sidecar,
            &["--project", project, "--from", "latest", "--yes"],
        );
        let after = tree(&up.top);
        assert_eq!(
            after, up.before,
            "project {project}'s directory after the restore (left) and before the disaster \
             (right)"
        );
        up.compose.run(&["up", "-d"]);
        let web = up.compose.container("web");
        wait_serving(&web, &paths, &up.expected, Duration::from_secs(60));
    }
}
