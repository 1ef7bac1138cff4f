//! The shell scripts `init` sends to a remote whose key still opens a shell, to install the guard
//! there: a probe of what is there, the files written under temporary names and renamed, the
//! guard's setup, the repository key's export, and the key's `authorized_keys` line narrowed to
//! the guard. Every word from configuration is quoted with [`quote`]; secrets travel on stdin.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::remote::guard::GUARD_PATH;
use crate::remote::ssh::quote;

/// Prints `key=value` lines about the remote: which programs it has (`have_python3`, ...), the
/// sha256 of each of `paths` (or `none`), whether `mirror` is a directory, whether `repository`
/// holds a repository and whether it is append-only, and whether the key whose public blob is
/// `blob` is in `authorized_keys` (`key=missing|open|restricted`).
pub fn probe_script(paths: &[&str], mirror: &str, repository: Option<&str>, blob: &str) -> String {
    let mut script = String::from(
        "say() { printf '%s=%s\\n' \"$1\" \"$2\"; }\n\
         sum() { if [ -f \"$1\" ]; then sha256sum < \"$1\" | cut -d' ' -f1; else echo none; fi; }\n\
         for p in python3 rsync borg setpriv; do\n\
         if command -v $p >/dev/null 2>&1; then say have_$p yes; else say have_$p no; fi; done\n",
    );
    for path in paths {
        writeln!(script, "say {} \"$(sum {})\"", quote(path), quote(path)).unwrap();
    }
    let mirror = quote(mirror);
    writeln!(
        script,
        "say mirror \"$(test -d {mirror} && echo yes || echo no)\""
    )
    .unwrap();
    if let Some(repository) = repository {
        let repo_config = quote(&format!("{repository}/config"));
        writeln!(
            script,
            "say repository \"$(test -f {repo_config} && echo yes || echo no)\"\n\
             say append_only \"$(grep -qE '^append_only *= *1' {repo_config} 2>/dev/null && \
             echo yes || echo no)\""
        )
        .unwrap();
    }
    writeln!(
        script,
        "line=$(grep -F {} \"$HOME/.ssh/authorized_keys\" 2>/dev/null | head -n 1)\n\
         case \"$line\" in '') say key missing ;; *command=*) say key restricted ;; \
         *) say key open ;; esac",
        quote(blob)
    )
    .unwrap();
    script
}

/// Writes each `(path, content, mode)`, to a temporary name first and then renamed, making its
/// directory; for `sh -s`.
pub fn install_script(files: &[(&str, &str, &str)]) -> String {
    let mut script = String::from("set -eu\numask 022\n");
    for (path, content, mode) in files {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        let sum: String = Sha256::digest(content.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let delimiter = format!("BACKUP_SIDECAR_{}", &sum[..16]);
        writeln!(
            script,
            "mkdir -p {dir}\ncat > {path}.new <<'{delimiter}'\n{content}{nl}{delimiter}\n\
             chmod {mode} {path}.new\nmv -f {path}.new {path}",
            dir = quote(dir),
            path = quote(path),
            nl = if content.ends_with('\n') { "" } else { "\n" },
        )
        .unwrap();
    }
    script
}

/// `guard --setup` (the passphrase goes on its stdin): mirror directory, reader, repository.
pub fn setup_line() -> String {
    format!("{GUARD_PATH} --setup")
}

/// Prints the repository's key for paper.
pub fn key_export_line(repository: &str) -> String {
    format!("borg key export --paper {}", quote(repository))
}

/// Replaces the `authorized_keys` line of the key whose public blob is `blob` with one that
/// runs only the guard (`restrict,command="GUARD_PATH"`, the line's other options kept after
/// it); for `sh -s`.
pub fn restrict_script(blob: &str) -> String {
    format!(
        "set -eu\nkeys=\"$HOME/.ssh/authorized_keys\"\n\
         awk -v blob={blob} -v opts={opts} '{{ n = split($0, w, \" \"); found = 0; \
         for (i = 1; i <= n; i++) if (w[i] == blob) found = i; \
         if (found) {{ line = opts; for (i = 1; i < found - 1; i++) \
         line = line (i == 1 ? \",\" : \" \") w[i]; \
         for (i = found - 1; i <= n; i++) line = line \" \" w[i]; print line }} \
         else print }}' \"$keys\" > \"$keys.new\"\n\
         chmod 600 \"$keys.new\"\nmv -f \"$keys.new\" \"$keys\"\n",
        blob = quote(blob),
        opts = quote(&format!("restrict,command=\"{GUARD_PATH}\"")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_valid_shell_and_quote_what_they_are_given() {
        let probe = probe_script(&["/a b/guard"], "/m it's", Some("/r"), "AAAA$(x)");
        assert!(
            probe.contains("say '/a b/guard' \"$(sum '/a b/guard')\""),
            "{probe}"
        );
        assert!(probe.contains("test -d '/m it'\\''s'"), "{probe}");
        assert!(probe.contains("grep -F 'AAAA$(x)'"), "{probe}");
        assert!(!probe_script(&[], "/m", None, "b").contains("append_only"));
        let install = install_script(&[("/usr/local/lib/x/guard", "#!/bin/sh\necho hi", "755")]);
        assert!(install.starts_with("set -eu\numask 022\nmkdir -p /usr/local/lib/x\n"));
        assert!(install.contains("echo hi\nBACKUP_SIDECAR_"), "{install}");
        assert!(install.ends_with("mv -f /usr/local/lib/x/guard.new /usr/local/lib/x/guard\n"));
        assert_eq!(key_export_line("/r b"), "borg key export --paper '/r b'");
        assert_eq!(setup_line(), format!("{GUARD_PATH} --setup"));
        for script in [
            probe,
            install,
            restrict_script("AAAA"),
            key_export_line("/r"),
        ] {
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .unwrap();
            assert!(status.success(), "not valid sh: {script}");
        }
    }

    #[test]
    fn restrict_keeps_the_other_lines_and_the_keys_options() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        let keys = home.path().join(".ssh/authorized_keys");
        std::fs::write(
            &keys,
            "ssh-ed25519 OTHER other\nfrom=\"10.0.0.0/8\" ssh-ed25519 MINE me@host\n",
        )
        .unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", &restrict_script("MINE")])
            .env("HOME", home.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(&keys).unwrap(),
            format!(
                "ssh-ed25519 OTHER other\nrestrict,command=\"{GUARD_PATH}\",from=\"10.0.0.0/8\" \
                 ssh-ed25519 MINE me@host\n"
            )
        );
    }
}
