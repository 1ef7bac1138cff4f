//! End to end: the daemon behind a Docker socket proxy (Debian's HAProxy with
//! `compose/socket-proxy/haproxy.cfg`) that lets through only what the daemon uses. A run with a
//! freeze works through it; creating a container, exec and removal are refused. A proxy that
//! also refuses the engine's events still lets runs succeed, and the daemon says once what that
//! costs.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// HAProxy on a socket of its own, stopped on drop.
struct Proxy {
    dir: tempfile::TempDir,
    child: Child,
}

impl Proxy {
    fn start() -> Proxy {
        Proxy::with_rules(|rules| rules)
    }

    /// With the project's configuration as `edit` changes it.
    fn with_rules(edit: impl FnOnce(String) -> String) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/socket-proxy/haproxy.cfg");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, edit(std::fs::read_to_string(ours).unwrap())).unwrap();
        let socket = dir.path().join("docker.sock");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .env("PROXY_SOCKET", &socket)
            .env("ENGINE_SOCKET", "/var/run/docker.sock")
            .spawn()
            .expect("haproxy runs (scripts/provision.sh installs it)");
        wait_until("the proxy's socket", Duration::from_secs(10), || {
            socket.exists()
        });
        Proxy { dir, child }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// The HTTP status the proxy answers to `method path`.
    fn status(&self, method: &str, path: &str) -> u16 {
        let mut stream = UnixStream::connect(self.socket()).unwrap();
        let body = if method != "POST" {
            String::new()
        } else {
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_string()
        };
        let end = if body.is_empty() { "\r\n" } else { "" };
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: docker\r\n{body}{end}"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sidecar, with the proxy's socket where the engine's would be.
fn sidecar_behind(env: &Env, remote: &Remote, proxy: &Proxy) -> String {
    let engine_mount = "/var/run/docker.sock:/var/run/docker.sock".to_string();
    let proxy_mount = format!("{}:/var/run/docker.sock", proxy.socket().display());
    let args: Vec<String> = env
        .sidecar_args(&env.sidecar_env(remote, &[]))
        .into_iter()
        .map(|a| {
            if a == engine_mount {
                proxy_mount.clone()
            } else {
                a
            }
        })
        .collect();
    assert!(args.contains(&proxy_mount));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.container("sidecar", &args, SIDECAR_IMAGE, &[])
}

#[test]
fn the_daemon_works_behind_a_proxy_that_allows_only_what_it_uses() {
    let proxy = Proxy::start();
    let env = Env::new("proxy");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo data > /data/file");
    let app = env.app(
        "app",
        &volume,
        "while :; do date > /data/now; sleep 0.05; done",
    );

    let sidecar = sidecar_behind(&env, &remote, &proxy);
    let finished = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(finished["fields"]["outcome"], "success", "{finished}");
    let thawed = events_named(&sidecar, "group thawed");
    assert_eq!(
        thawed.len(),
        1,
        "the app was paused and unpaused through the proxy"
    );
    assert_eq!(thawed[0]["fields"]["containers"], app.as_str());
    assert_eq!(
        env.on_remote(&remote, &format!("cat /backup/mirror/{volume}/file")),
        "data\n"
    );
    assert_running_not_paused(&app);

    // What the daemon uses goes through; what it does not is refused.
    assert_eq!(proxy.status("GET", "/v1.41/info"), 200);
    assert_eq!(proxy.status("GET", &format!("/containers/{app}/json")), 200);
    for (method, path) in [
        ("POST", "/v1.41/containers/create".to_string()),
        ("POST", format!("/v1.41/containers/{app}/exec")),
        ("DELETE", format!("/v1.41/containers/{app}")),
        ("POST", format!("/v1.41/containers/{app}/kill")),
        ("POST", "/v1.41/volumes/create".to_string()),
        ("DELETE", format!("/v1.41/volumes/{volume}")),
        ("GET", format!("/v1.41/containers/{app}/archive?path=/etc")),
        ("POST", "/v1.41/images/create?fromImage=x".to_string()),
    ] {
        assert_eq!(proxy.status(method, &path), 403, "{method} {path}");
    }
    assert_running_not_paused(&app);
}

#[test]
fn a_proxy_that_refuses_the_events_costs_only_what_the_daemon_says_once() {
    let events_rule = "    http-request allow if METH_GET { path -m reg ^(/v[0-9.]+)?/events$ }\n";
    let proxy = Proxy::with_rules(|rules| {
        assert!(
            rules.contains(events_rule),
            "the configuration lets /events through"
        );
        rules.replace(events_rule, "")
    });
    let env = Env::new("proxy-no-events");
    let remote = env.remote();
    let volume = env.volume("data", &["backup.enable=true", &env.project_label()]);
    env.in_volume(&volume, "echo data > /data/file");
    let app = env.app("app", &volume, "sleep infinity");
    let sidecar = sidecar_behind(&env, &remote, &proxy);
    let first = wait_for_run(&sidecar, RUN_TIMEOUT);
    assert_eq!(first["fields"]["outcome"], "success", "{first}");
    docker(&["kill", "-s", "USR1", &sidecar]);
    let second = wait_for_events(&sidecar, "run finished", 2, RUN_TIMEOUT).remove(1);
    assert_eq!(second["fields"]["outcome"], "success", "{second}");
    let said: Vec<String> = events(&sidecar)
        .iter()
        .map(|e| message(e).to_string())
        .filter(|m| m.starts_with("the engine's events cannot be read"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {said:?}");
    assert!(said[0].contains("GET /events"), "{said:?}");
    assert_running_not_paused(&app);
}
