//! `docs/configuration.md` against the code: every environment variable the sidecar reads has a row
//! in the page's variable tables, and every row there names a variable the sidecar reads.
//!
//! What the code reads is found, not listed by hand: the fields of [`RawConfig`] (what `envy`
//! fills, each field the upper-cased variable), the `NAME_FILE` variants [`RawConfig::from_vars`]
//! reads (found by handing it each one), and every variable named by a literal `env::var` call in
//! `src/`. Only what a dependency reads is listed here by hand.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::RawConfig;

/// The page, as the test was compiled with it.
const PAGE: &str = include_str!("../../docs/configuration.md");
const PAGE_NAME: &str = "docs/configuration.md";

/// Variables read by a dependency on the sidecar's behalf, which no search of `src/` finds.
const READ_BY_DEPENDENCIES: &[(&str, &str)] = &[
    // `Docker::connect_with_defaults` (src/engine/discover.rs) picks the engine from it. bollard's
    // other variables (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) belong to its `ssl` feature, which is
    // not enabled.
    (
        "DOCKER_HOST",
        "read by bollard's Docker::connect_with_defaults",
    ),
];

/// A deserializer that only records the field list serde's derive hands to `deserialize_struct`,
/// then fails: the complete list of what `envy` can fill, renames included.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom(
            "only a struct's field names are recorded",
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Every variable the sidecar reads, with where it is read.
fn read_by_code() -> BTreeMap<String, String> {
    let mut read = BTreeMap::new();

    let mut fields = Vec::new();
    let _ = RawConfig::deserialize(FieldNames(&mut fields));
    assert!(
        !fields.is_empty(),
        "RawConfig gave no field names: is it still a plain serde struct?"
    );
    // envy matches a variable to a field by its lower-cased name.
    let fields: Vec<String> = fields.iter().map(|f| f.to_uppercase()).collect();
    for name in &fields {
        read.insert(
            name.clone(),
            format!(
                "field `{}` of RawConfig (src/config/raw.rs), read with envy",
                name.to_lowercase()
            ),
        );
    }

    // A `NAME_FILE` variant is read when the value in its file arrives in the raw configuration.
    let dir = tempfile::tempdir().expect("a temporary directory");
    for name in &fields {
        let probe = format!("doc-test-probe-of-{name}");
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{probe}\n")).expect("write the probe file");
        let file_var = format!("{name}_FILE");
        let raw = RawConfig::from_vars([(file_var.clone(), path.display().to_string())])
            .unwrap_or_else(|e| panic!("RawConfig::from_vars with only {file_var} set: {e}"));
        if format!("{raw:?}").contains(&probe) {
            read.insert(
                file_var,
                format!("file variant of {name}, read by RawConfig::from_vars"),
            );
        }
    }

    for (name, place) in direct_reads() {
        read.insert(name, place);
    }
    for (name, why) in READ_BY_DEPENDENCIES {
        read.insert(name.to_string(), why.to_string());
    }
    read
}

/// Variables named by a literal `env::var`/`env::var_os` call anywhere in `src/`, with the file.
/// Test modules (`tests.rs`, this file) are left out: what a test reads is no setting.
fn direct_reads() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        !files.is_empty(),
        "no Rust files found below {}",
        src.display()
    );
    // Built with concat! so that this file does not find itself.
    let calls = [concat!("env::var", "("), concat!("env::var_os", "(")];
    let mut reads = BTreeMap::new();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name == "doc_tests.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let shown = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&file);
        for call in calls {
            for (at, _) in text.match_indices(call) {
                let rest = &text[at + call.len()..];
                let literal = rest
                    .strip_prefix('"')
                    .and_then(|r| r.split_once('"'))
                    .map(|(name, _)| name);
                let line = text[..at].matches('\n').count() + 1;
                let Some(variable) = literal else {
                    panic!(
                        "{}:{line}: an environment variable is read through a name this test \
                         cannot see; read it as {call}\"NAME\") so that {PAGE_NAME} is checked \
                         for it",
                        shown.display()
                    );
                };
                reads.insert(
                    variable.to_string(),
                    format!("read with std::env in {}:{line}", shown.display()),
                );
            }
        }
    }
    reads
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The variables of the page's variable tables (those whose header's first column is
/// `variable`): every backticked name in a row's first column, with the row's line number.
fn named_on_page() -> BTreeMap<String, usize> {
    let lines: Vec<&str> = PAGE.lines().collect();
    let mut named = BTreeMap::new();
    let mut in_variable_table = false;
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        if !line.starts_with('|') {
            in_variable_table = false;
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("").trim();
        let next_is_rule = lines
            .get(index + 1)
            .is_some_and(|l| l.starts_with("|--") || l.starts_with("| --"));
        if next_is_rule {
            in_variable_table = first == "variable";
            continue;
        }
        if !in_variable_table || first.starts_with("--") {
            continue;
        }
        let names: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        assert!(
            !names.is_empty(),
            "{PAGE_NAME}:{number}: a row of a variable table names no variable in backticks: {line}"
        );
        for name in names {
            let is_name = name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            assert!(
                is_name,
                "{PAGE_NAME}:{number}: `{name}` is not a whole variable name; write each \
                 variable out in full, one per row"
            );
            named.entry(name.to_string()).or_insert(number);
        }
    }
    assert!(
        !named.is_empty(),
        "{PAGE_NAME} has no table whose first column is headed `variable`"
    );
    named
}

#[test]
fn every_variable_the_code_reads_has_a_row_on_the_configuration_page() {
    let named = named_on_page();
    let missing: Vec<String> = read_by_code()
        .into_iter()
        .filter(|(name, _)| !named.contains_key(name))
        .map(|(name, place)| format!("  {name} ({place})"))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code but missing from the variable tables of {PAGE_NAME}; add a row for \
         each:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_variable_on_the_configuration_page_is_read_by_the_code() {
    let read = read_by_code();
    let unread: Vec<String> = named_on_page()
        .into_iter()
        .filter(|(name, _)| !read.contains_key(name))
        .map(|(name, line)| format!("  {name} ({PAGE_NAME}:{line})"))
        .collect();
    assert!(
        unread.is_empty(),
        "named in the variable tables of {PAGE_NAME} but read nowhere in the code (not a field \
         of RawConfig, not a NAME_FILE that RawConfig::from_vars reads, not an env::var call in \
         src/, not in READ_BY_DEPENDENCIES); remove the row or read the variable:\n{}",
        unread.join("\n")
    );
}
