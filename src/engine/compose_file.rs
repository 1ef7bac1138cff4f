//! The files a compose file names that compose reads to start the project: a service's
//! `env_file`, the file an `extends` takes a service from, and the files of an `include`. Without
//! them a restored compose file does not start (`env file ... not found`), so they are kept with
//! the project's files. They are read through `BACKUP_HOST_ROOT`, following `extends` and
//! `include` into the files they name.

use std::collections::BTreeSet;
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

/// A file a compose file names, as a host path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Named {
    /// Host path.
    pub path: String,
    /// Whether compose fails without it (`env_file` with `required: false` does not).
    pub required: bool,
}

/// What the compose files of a project name, beyond themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// The files, as host paths.
    pub files: BTreeSet<Named>,
    /// Why a name could not be followed: a path with a variable in it, a file compose could not
    /// read either.
    pub problems: BTreeSet<String>,
}

/// How deep `include` and `extends` are followed: compose itself refuses cycles, this stops them.
const MAX_DEPTH: usize = 8;

/// Everything `compose_files` (host paths of regular files) name, read below `root`.
pub fn references(root: &Path, compose_files: &[String]) -> References {
    let mut found = References::default();
    let mut seen: BTreeSet<String> = compose_files.iter().cloned().collect();
    let mut queue: Vec<(String, usize)> = compose_files.iter().map(|f| (f.clone(), 0)).collect();
    while let Some((file, depth)) = queue.pop() {
        let text = match std::fs::read_to_string(root.join(file.trim_start_matches('/'))) {
            Ok(text) => text,
            Err(e) => {
                found.problems.insert(format!("cannot read {file}: {e}"));
                continue;
            }
        };
        let dir = file.rsplit_once('/').map_or("/", |(d, _)| d);
        let named = match named(&text) {
            Ok(named) => named,
            Err(e) => {
                found
                    .problems
                    .insert(format!("cannot read {file} as YAML: {e}"));
                continue;
            }
        };
        for (path, kind) in named {
            if path.contains('$') {
                found.problems.insert(format!(
                    "{file} names {path}, whose place depends on a variable"
                ));
                continue;
            }
            let host = if path.starts_with('/') {
                join("/", &path)
            } else {
                join(dir, &path)
            };
            match kind {
                Kind::EnvFile { required } => {
                    found.files.insert(Named {
                        path: host,
                        required,
                    });
                }
                Kind::Compose => {
                    found.files.insert(Named {
                        path: host.clone(),
                        required: true,
                    });
                    if depth < MAX_DEPTH && seen.insert(host.clone()) {
                        queue.push((host, depth + 1));
                    }
                }
            }
        }
    }
    found
}

/// What a name in a compose file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An env file.
    EnvFile { required: bool },
    /// Another compose file (`extends.file`, `include`), which may name more.
    Compose,
}

/// The paths one compose file names, as written (relative to its directory unless absolute).
fn named(text: &str) -> Result<Vec<(String, Kind)>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for doc in &docs {
        if let Some(services) = doc["services"].as_hash() {
            for service in services.values() {
                env_files(&service["env_file"], &mut out);
                if let Some(file) = service["extends"]["file"].as_str() {
                    out.push((file.to_string(), Kind::Compose));
                }
            }
        }
        for include in doc["include"].as_vec().into_iter().flatten() {
            match include {
                Yaml::String(path) => out.push((path.clone(), Kind::Compose)),
                Yaml::Hash(_) => {
                    for path in strings(&include["path"]) {
                        out.push((path, Kind::Compose));
                    }
                    env_files(&include["env_file"], &mut out);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// `env_file: a.env`, `env_file: [a.env, b.env]`, `env_file: [{path: a.env, required: false}]`.
fn env_files(value: &Yaml, out: &mut Vec<(String, Kind)>) {
    let entries: Vec<&Yaml> = match value {
        Yaml::Array(list) => list.iter().collect(),
        other => vec![other],
    };
    for entry in entries {
        match entry {
            Yaml::String(path) => out.push((path.clone(), Kind::EnvFile { required: true })),
            Yaml::Hash(_) => {
                if let Some(path) = entry["path"].as_str() {
                    let required = entry["required"].as_bool().unwrap_or(true);
                    out.push((path.to_string(), Kind::EnvFile { required }));
                }
            }
            _ => {}
        }
    }
}

/// A string or a list of strings.
fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(list) => list
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The absolute `base` joined with `path`, `.` and `..` taken away; `..` stops at the root.
pub fn join(base: &str, path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in base.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            part => out.push(part),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(String, Kind)> {
        named(text).unwrap()
    }

    #[test]
    fn finds_env_files_extends_and_includes() {
        let text = r#"
include:
  - other/compose.yaml
  - path: [a.yaml, /abs/b.yaml]
    env_file: inc.env
services:
  web:
    image: x
    env_file: web.env
  db:
    env_file:
      - db.env
      - path: ./optional.env
        required: false
  worker:
    extends:
      file: common.yml
      service: base
  plain:
    image: y
"#;
        let env = |required| Kind::EnvFile { required };
        let mut got = names(text);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("./optional.env".to_string(), env(false)),
                ("/abs/b.yaml".to_string(), Kind::Compose),
                ("a.yaml".to_string(), Kind::Compose),
                ("common.yml".to_string(), Kind::Compose),
                ("db.env".to_string(), env(true)),
                ("inc.env".to_string(), env(true)),
                ("other/compose.yaml".to_string(), Kind::Compose),
                ("web.env".to_string(), env(true)),
            ]
        );
        assert_eq!(names("services: {}\n"), vec![]);
        assert!(named("services: [unclosed\n").is_err());
    }

    #[test]
    fn follows_named_compose_files_and_places_paths() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "srv/app/compose.yaml",
            "include: [../shared/base.yaml]\nservices:\n  web:\n    env_file: ./web.env\n",
        );
        write(
            "srv/shared/base.yaml",
            "services:\n  db:\n    env_file: [db.env, \"${STAGE}.env\"]\n",
        );
        let found = references(root.path(), &["/srv/app/compose.yaml".to_string()]);
        let files: Vec<(&str, bool)> = found
            .files
            .iter()
            .map(|n| (n.path.as_str(), n.required))
            .collect();
        assert_eq!(
            files,
            vec![
                ("/srv/app/web.env", true),
                ("/srv/shared/base.yaml", true),
                ("/srv/shared/db.env", true),
            ]
        );
        assert_eq!(
            found.problems.into_iter().collect::<Vec<_>>(),
            vec!["/srv/shared/base.yaml names ${STAGE}.env, whose place depends on a variable"]
        );
    }
}
