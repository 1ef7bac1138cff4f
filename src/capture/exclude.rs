//! rsync's exclude patterns, matched the way rsync matches them, for the patterns whose meaning is
//! certain: `*`, `**`, `?`, a leading `/` (anchored at the volume's root), a trailing `/` (only
//! directories) and a trailing `/***` (the directory and everything in it).
//!
//! The scan skips what a pattern excludes, as rsync does. A pattern with anything else (a
//! character class, a backslash, rsync's `+ `/`- ` prefixes, `!`) is not used here: it then
//! matches nothing, so the capture copies more than rsync will send (the upload passes every
//! pattern to rsync, which leaves the excluded entries out). Copying too much costs staging space;
//! skipping too much would lose changes, which is why an uncertain pattern never skips.

/// One pattern we understand.
#[derive(Debug, Clone)]
struct Pattern {
    /// The pattern's text, without the leading `/`, the trailing `/` or `/***`.
    glob: Vec<u8>,
    /// Leading `/`: matched from the volume's root.
    anchored: bool,
    /// Trailing `/`: only directories.
    dirs_only: bool,
    /// Matched against the whole path (it has a `/` or a `**`), or only the last name.
    whole_path: bool,
}

/// The patterns of one volume.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<Pattern>,
}

impl Excludes {
    /// The patterns we can match exactly; the others are left to rsync (see the module's notes).
    pub fn new(patterns: &[String]) -> Self {
        Excludes {
            patterns: patterns.iter().filter_map(|p| Pattern::parse(p)).collect(),
        }
    }

    /// Whether rsync excludes the entry at `path` (relative to the volume's root, `/`-separated,
    /// no leading `/`). rsync does not descend into an excluded directory; neither does the scan,
    /// so parents need not be checked here.
    pub fn excludes(&self, path: &[u8], is_dir: bool) -> bool {
        self.patterns.iter().any(|p| p.matches(path, is_dir))
    }
}

impl Pattern {
    fn parse(text: &str) -> Option<Pattern> {
        let text = text.as_bytes();
        let unsupported = text.is_empty()
            || text.iter().any(|c| matches!(c, b'[' | b'\\'))
            || text.starts_with(b"+ ")
            || text.starts_with(b"- ")
            || text == b"!";
        if unsupported {
            return None;
        }
        let (text, anchored) = match text.strip_prefix(b"/") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        // `dir/***` is `dir/` itself and everything in it; the scan never enters an excluded
        // directory, so that is `dir/`.
        let text = text.strip_suffix(b"/***").map_or(text, |t| {
            // Keep the trailing slash: only the directory is meant.
            &text[..t.len() + 1]
        });
        let (glob, dirs_only) = match text.strip_suffix(b"/") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        if glob.is_empty() || glob.ends_with(b"/") {
            return None;
        }
        let whole_path = glob.contains(&b'/') || glob.windows(2).any(|w| w == b"**");
        Some(Pattern {
            glob: glob.to_vec(),
            anchored,
            dirs_only,
            whole_path,
        })
    }

    fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        if self.dirs_only && !is_dir {
            return false;
        }
        if self.anchored {
            return wildmatch(&self.glob, path);
        }
        if !self.whole_path {
            let name = path.rsplit(|c| *c == b'/').next().unwrap_or(path);
            return wildmatch(&self.glob, name);
        }
        // Not anchored: the pattern may match the path from any `/` on.
        std::iter::once(0)
            .chain(
                path.iter()
                    .enumerate()
                    .filter(|(_, c)| **c == b'/')
                    .map(|(i, _)| i + 1),
            )
            .any(|start| wildmatch(&self.glob, &path[start..]))
    }
}

/// `*` (no `/`), `**` (anything) and `?` (one byte but `/`); everything else literal.
fn wildmatch(glob: &[u8], text: &[u8]) -> bool {
    match glob {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| wildmatch(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let run = text.iter().position(|c| *c == b'/').unwrap_or(text.len());
            (0..=run).any(|i| wildmatch(rest, &text[i..]))
        }
        [b'?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != b'/' && wildmatch(rest, tail)),
        [c, rest @ ..] => matches!(text, [t, tail @ ..] if t == c && wildmatch(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str, is_dir: bool) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Excludes::new(&patterns).excludes(path.as_bytes(), is_dir)
    }

    #[test]
    fn a_name_matches_at_any_depth() {
        assert!(excluded(&["cache"], "cache", true));
        assert!(excluded(&["cache"], "a/b/cache", false));
        assert!(!excluded(&["cache"], "a/cache2", false));
        assert!(excluded(&["*.tmp"], "x/y.tmp", false));
        assert!(!excluded(&["*.tmp"], "x.tmp/y", false));
        assert!(excluded(&["?.log"], "d/a.log", false));
        assert!(!excluded(&["?.log"], "d/ab.log", false));
    }

    #[test]
    fn anchoring_and_directories() {
        assert!(excluded(&["/cache"], "cache", true));
        assert!(!excluded(&["/cache"], "a/cache", true));
        assert!(excluded(&["cache/"], "a/cache", true));
        assert!(!excluded(&["cache/"], "a/cache", false));
        assert!(excluded(&["/tmp/***"], "tmp", true));
        assert!(!excluded(&["/tmp/***"], "tmp", false));
    }

    #[test]
    fn paths_match_from_any_slash() {
        assert!(excluded(&["a/b"], "a/b", false));
        assert!(excluded(&["a/b"], "x/a/b", false));
        assert!(!excluded(&["a/b"], "xa/b", false));
        assert!(excluded(&["a/*/c"], "z/a/b/c", false));
        assert!(!excluded(&["a/*/c"], "a/b/b/c", false));
        assert!(excluded(&["a/**/c"], "a/b/b/c", false));
        assert!(excluded(&["**.bak"], "deep/er/x.bak", false));
    }

    #[test]
    fn uncertain_patterns_never_match() {
        assert!(!excluded(&["[ab]"], "a", false));
        assert!(!excluded(&["a\\*"], "a*", false));
        assert!(!excluded(&["+ keep"], "keep", false));
        assert!(!excluded(&["- drop"], "drop", false));
        assert!(!excluded(&["!"], "x", false));
        assert!(!excluded(&[""], "x", false));
    }

    /// The scan must never skip what rsync would send: the patterns we use are checked against
    /// rsync itself, on a tree with the awkward cases.
    #[test]
    fn agrees_with_rsync() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        let paths = [
            "cache/",
            "cache/x",
            "a/cache",
            "a/cache2",
            "a/b/c",
            "a/b/b/c",
            "x/a/b",
            "xa/b",
            "tmp/",
            "tmp/t",
            "d/tmp",
            "y.tmp",
            "z.tmp/",
            "z.tmp/keep",
            "one.log",
            "two.log",
            "deep/er/x.bak",
        ];
        for p in paths {
            let full = source.join(p.trim_end_matches('/'));
            if p.ends_with('/') {
                std::fs::create_dir_all(&full).unwrap();
            } else {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, b"x").unwrap();
            }
        }
        let sets: [&[&str]; 6] = [
            &["cache", "*.tmp"],
            &["/cache", "cache/"],
            &["a/b", "a/*/c"],
            &["a/**/c", "**.bak"],
            &["/tmp/***", "???.log"],
            &["tmp/", "b"],
        ];
        for patterns in sets {
            let target = dir.path().join("dst");
            let _ = std::fs::remove_dir_all(&target);
            let mut cmd = std::process::Command::new("rsync");
            cmd.arg("-a");
            for p in patterns {
                cmd.arg(format!("--exclude={p}"));
            }
            let status = cmd
                .arg(format!("{}/", source.display()))
                .arg(&target)
                .status()
                .expect("rsync is installed (scripts/provision.sh)");
            assert!(status.success());
            let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let excludes = Excludes::new(&owned);
            for p in paths {
                let rel = p.trim_end_matches('/');
                let is_dir = p.ends_with('/');
                // Excluded by a pattern, or inside an excluded directory.
                let ours = rel
                    .match_indices('/')
                    .map(|(i, _)| (&rel[..i], true))
                    .chain([(rel, is_dir)])
                    .any(|(prefix, dir)| excludes.excludes(prefix.as_bytes(), dir));
                let theirs = !target.join(rel).exists();
                assert_eq!(ours, theirs, "{patterns:?} on {p}");
            }
        }
    }
}
