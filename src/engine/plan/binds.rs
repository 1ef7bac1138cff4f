//! Bind mounts: the host directories that containers labelled `backup.enable=true` bind-mount are
//! sources like volumes, read through `BACKUP_HOST_ROOT`. The engine's and the kernel's paths are
//! never backed up; single files are the project's ([`super::project`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{Candidate, EXCLUDE_LABEL, Origin, Skipped, enabled};
use crate::config::split_list;
use crate::engine::discover::{ContainerInfo, HostPath, Inventory};

/// What every bind's mirror directory name starts with. Docker volume names start with a letter
/// or digit, so no volume's directory can take a bind's.
pub const BIND_PREFIX: &str = "_bind-";

/// The longest name a directory may have.
const NAME_MAX: usize = 255;

/// The mirror directory of the host directory `path`: [`BIND_PREFIX`], then the path's components
/// joined with `-`, every byte but ASCII letters, digits, `.` and `_` written `%XX`:
/// `/srv/my-app/data` is `_bind-srv-my%2Dapp-data`. Two paths never share a name, and a path
/// keeps its name from run to run.
pub fn bind_name(path: &str) -> String {
    let components: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| escape(c, ""))
        .collect();
    format!("{BIND_PREFIX}{}", components.join("-"))
}

/// The host path whose mirror directory is `name` ([`bind_name`] backwards); `None` when `name`
/// is not one.
pub fn bind_path(name: &str) -> Option<String> {
    let rest = name.strip_prefix(BIND_PREFIX)?;
    let mut path = String::new();
    for component in rest.split('-') {
        let bytes = component.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        let component = String::from_utf8(decoded).ok()?;
        if component.is_empty() || component == "." || component == ".." || component.contains('/')
        {
            return None;
        }
        path.push('/');
        path.push_str(&component);
    }
    (bind_name(&path) == name).then_some(path)
}

/// `text` with every byte but ASCII letters, digits, `.`, `_` and those in `keep` written `%XX`.
pub(super) fn escape(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || keep.contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `path` is `dir` or below it.
pub(super) fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Host paths never backed up: the whole host, the kernel's and the runtime's file systems, the
/// engine's data directory and its socket.
pub(super) fn never(path: &str, docker_root: &str) -> bool {
    path == "/"
        || ["/proc", "/sys", "/dev", "/run", "/var/run", docker_root]
            .iter()
            .any(|dir| under(path, dir))
        || path.ends_with("/docker.sock")
}

/// The bind sources that are asked for (a container using one is labelled `backup.enable=true`),
/// in path order. A directory inside another selected one is not a source of its own: its users
/// freeze with the outer one, whose copy holds its data. Without the host's root each asked-for
/// path gets a warning instead.
pub(super) fn select<'a>(
    inventory: &'a Inventory,
    warnings: &mut BTreeSet<String>,
) -> Vec<Result<Candidate<'a>, Skipped>> {
    let mut users: BTreeMap<&str, Vec<&ContainerInfo>> = BTreeMap::new();
    for c in inventory.others() {
        for path in &c.binds {
            if !never(path, &inventory.docker_root) {
                users.entry(path.as_str()).or_default().push(c);
            }
        }
    }
    users.retain(|_, us| us.iter().any(|c| enabled(&c.labels) == Some(true)));
    let Some(host) = &inventory.host else {
        for (path, us) in users {
            let asking = us.iter().find(|c| enabled(&c.labels) == Some(true));
            warnings.insert(format!(
                "bind mount {path} of container {} is not backed up: mount the host's root \
                 read-only into the sidecar (- /:/host:ro) and set BACKUP_HOST_ROOT=/host",
                asking.map_or("?", |c| c.name.as_str())
            ));
        }
        return Vec::new();
    };
    let mut kept: Vec<(&str, Vec<&ContainerInfo>, Vec<String>)> = Vec::new();
    for (path, us) in users {
        match host.get(path).copied().unwrap_or(HostPath::Missing) {
            // A missing directory stays a source: its copy fails, alone, and says so.
            HostPath::Dir | HostPath::Missing => {}
            HostPath::File | HostPath::Special => continue,
            HostPath::Link => {
                warnings.insert(format!(
                    "bind mount {path} is a symbolic link on the host and is not followed: \
                     bind-mount its target instead"
                ));
                continue;
            }
        }
        if let Some((_, outer, _)) = kept.iter_mut().find(|(k, _, _)| under(path, k)) {
            for c in us {
                if !outer.iter().any(|o| o.id == c.id) {
                    outer.push(c);
                }
            }
            continue;
        }
        let mut excludes: Vec<String> = Vec::new();
        for c in &us {
            for pattern in split_list(c.labels.get(EXCLUDE_LABEL).map(String::as_str)) {
                if !excludes.contains(&pattern) {
                    excludes.push(pattern);
                }
            }
        }
        kept.push((path, us, excludes));
    }
    kept.into_iter()
        .map(|(path, users, excludes)| {
            let name = bind_name(path);
            if name.len() > NAME_MAX {
                return Err(Skipped {
                    volume: path.to_string(),
                    reason: format!(
                        "its mirror directory's name would be longer than {NAME_MAX} bytes"
                    ),
                });
            }
            Ok(Candidate {
                name,
                origin: Origin::Bind(path.to_string()),
                driver: None,
                excludes,
                project: None,
                users,
            })
        })
        .collect()
}
