#!/usr/bin/python3
"""backup-sidecar's remote guard: the forced command of the sidecar's ssh key.

Installed as /usr/local/lib/backup-sidecar/guard and named in the key's authorized_keys line:

    restrict,command="/usr/local/lib/backup-sidecar/guard" ssh-ed25519 AAAA... backup-sidecar

It reads SSH_ORIGINAL_COMMAND, never hands it to a shell, and runs only this vocabulary:

    rsync --server --daemon .      rsync's daemon protocol, chrooted into the mirror directory
    borg serve ...                 borg serve --append-only --restrict-to-repository REPO, as the
                                   unprivileged reader (restores and listings)
    backup-sidecar-guard VERB ...  the run's other steps, each built here (see VERBS), among
                                   them the second copy: `copy` (rclone of the repository, or
                                   borg create of the mirror into a second repository) and
                                   `copy-check`, to the copy_target of this side's guard.conf

Paths travel hex-encoded (any byte a file name may hold, nothing a shell would read) and must stay
inside the mirror directory, walked one component at a time without following symlinks. Archive
names are built here from a validated prefix and the remote's clock. Retention and the pre/post
commands come from this side's configuration, never from the client. Nothing is printed before an
exec: rsync and borg speak their own protocols on stdout.

Run by the owner on the remote (not through the key):

    guard --setup      creates the mirror directory, the reader user and, with the passphrase on
                       stdin, the append-only repository (repokey); fixes its permissions;
                       idempotent
    guard --compact    frees what prunes marked: check, append_only 0, compact, append_only 1
    guard --rollback [N]  lists the repository's transactions; with N, rolls the repository back
                       to transaction N (borg's documented procedure for append-only mode)
    guard --copy-stage  the staging tree of an rclone copy (run by `copy` under borg with-lock)
"""

import configparser
import fcntl
import functools
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

VERSION = "2"
# Fixed: sshd may pass some of the client's environment (AcceptEnv), so none of it is read.
CONFIG = "/etc/backup-sidecar/guard.conf"
HERE = os.path.dirname(os.path.realpath(__file__))
RSYNCD_CONF = os.path.join(HERE, "rsyncd.conf")
STAMP = ".backup-sidecar-complete"
HOST_MARKER = ".backup-sidecar-host"
VERB_PROGRAM = "backup-sidecar-guard"
# Found on sshd's PATH (the owner's, never the client's): a wrapper in /usr/local/bin works.
RSYNC = "rsync"
BORG = "borg"
RCLONE = "rclone"
DEFAULTS = {
    "mirror": "/backup/mirror",
    "repository": "",
    "reader": "backup-sidecar-reader",
    "keep_within": "",
    "keep_daily": "7",
    "keep_weekly": "4",
    "keep_monthly": "6",
    "pre_command": "",
    "post_command": "",
    # The second copy (verb_copy): off unless `copy` is set.
    "copy": "",
    "copy_target": "",
    "copy_config": "",
    "copy_passphrase_file": "/etc/backup-sidecar/copy.passphrase",
    "copy_bwlimit": "",
    "copy_keep_within": "",
    "copy_keep_daily": "",
    "copy_keep_weekly": "",
    "copy_keep_monthly": "",
}
# copy_config's default: rclone's config file, or the ssh client config of borg's BORG_RSH.
COPY_CONFIG = {"rclone": "/etc/backup-sidecar/rclone.conf",
               "borg": "/etc/backup-sidecar/copy_ssh_config"}
COPY_TARGET = {"rclone": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*:[^\s]+$"),
               "borg": re.compile(r"^ssh://([^\s/@]+)@([^\s/]+)(/\S*)$")}
COPY_TARGET_FORM = {"rclone": "NAME:PATH (NAME a remote of the rclone config, PATH without ..)",
                    "borg": "ssh://USER@HOST[:PORT]/PATH"}
BWLIMIT = re.compile(r"^([0-9]+)([KMG]?)$")
# The rclone options whose values say nothing about where the copy goes or how to get in: every
# other value of the section (host, user, url, endpoint, keys, passwords, ...) is hidden.
RCLONE_PLAIN = ("type", "vendor", "provider", "shell_type", "md5sum_command", "sha1sum_command",
                "force_path_style", "known_hosts_file", "region", "acl", "storage_class")
# An address in a message (rclone's "dial tcp 172.18.0.5:22"), hidden too.
ADDRESS = re.compile(r"\b[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]+)?\b|\[[0-9a-fA-F:]+\](:[0-9]+)?"
                     r"|https?://[^/\s\"']+")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,200}$")
PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
WITHIN = re.compile(r"^[0-9]{1,5}[HdwmY]$")
# borg's environment: never prompt (a prompt would read stdin), never accept a moved repository.
BORG_ENV = {
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
    "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
}


class Refused(Exception):
    """The request is not in the vocabulary; nothing was run."""


def load_config():
    config = dict(DEFAULTS)
    try:
        with open(CONFIG, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                key, sep, value = line.partition("=")
                key = key.strip()
                if not sep or key not in DEFAULTS:
                    raise SystemExit(
                        f"backup-sidecar guard: {CONFIG}:{number}: unknown setting {key!r}")
                config[key] = value.strip()
    except FileNotFoundError:
        pass
    for key in ("keep_daily", "keep_weekly", "keep_monthly",
                "copy_keep_daily", "copy_keep_weekly", "copy_keep_monthly"):
        # copy_keep_*: empty is the repository's keep_*.
        if not config[key].isdigit() and (config[key] or not key.startswith("copy_")):
            raise SystemExit(f"backup-sidecar guard: {CONFIG}: {key} must be a number")
    for key in ("keep_within", "copy_keep_within"):
        if config[key] and not WITHIN.match(config[key]):
            raise SystemExit(f"backup-sidecar guard: {CONFIG}: {key} must look like 2d or 12H")
    kind = config["copy"]
    if kind not in ("", "rclone", "borg"):
        raise SystemExit(f"backup-sidecar guard: {CONFIG}: copy must be rclone, borg or empty")
    if kind:
        if not config["copy_target"]:
            raise SystemExit(f"backup-sidecar guard: {CONFIG}: copy = {kind} needs copy_target")
        if kind == "rclone":
            config["copy_target"] = config["copy_target"].rstrip("/")
        if not copy_target_ok(kind, config["copy_target"]):
            raise SystemExit(f"backup-sidecar guard: {CONFIG}: copy_target must look like "
                             f"{COPY_TARGET_FORM[kind]}")
        config["copy_config"] = config["copy_config"] or COPY_CONFIG[kind]
    if config["copy_bwlimit"] and not BWLIMIT.match(config["copy_bwlimit"]):
        raise SystemExit(f"backup-sidecar guard: {CONFIG}: copy_bwlimit must look like 500K or "
                         "2M (bytes per second, K = KiB)")
    for key in ("mirror", "repository", "copy_config", "copy_passphrase_file"):
        if config[key] and not config[key].startswith("/"):
            raise SystemExit(f"backup-sidecar guard: {CONFIG}: {key} must be an absolute path")
    config["mirror"] = os.path.realpath(config["mirror"]) if config["mirror"] else ""
    return config


def copy_target_ok(kind, target):
    """rclone's NAME:PATH (PATH not empty, without '..') or borg's ssh://USER@HOST[:PORT]/PATH."""
    if not target.isprintable() or not COPY_TARGET[kind].match(target):
        return False
    return kind == "borg" or ".." not in target.split(":", 1)[1].split("/")


def missing(program):
    """rsync, borg or rclone is not installed: the shell's words and code, read the same way."""
    fail(f"{program}: command not found", 127)


def fail(message, code=1):
    sys.stderr.write(f"backup-sidecar guard: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


# ---- arguments ------------------------------------------------------------------------------


def hex_path(word):
    """A hex-encoded relative path: components that are neither empty, '.' nor '..'."""
    try:
        raw = bytes.fromhex(word)
    except ValueError:
        raise Refused("a path must be hex-encoded")
    if raw in (b"", b"."):
        return []
    parts = raw.split(b"/")
    if raw.startswith(b"/") or any(p in (b"", b".", b"..") for p in parts) or b"\0" in raw:
        raise Refused("a path must be relative, without '.', '..' or empty components")
    return parts


def mirror_dir(config, word):
    """The sidecar's mirror directory (hex of an absolute path), as components below the mirror."""
    try:
        raw = bytes.fromhex(word)
    except ValueError:
        raise Refused("a path must be hex-encoded")
    root = os.fsencode(config["mirror"])
    if raw.rstrip(b"/") == root:
        return []
    if not raw.startswith(root + b"/"):
        raise Refused(f"{os.fsdecode(raw)!r} is not inside the mirror directory {config['mirror']}")
    return hex_path(raw[len(root) + 1:].rstrip(b"/").hex())


def number(word, low, high):
    if not word.isdigit() or not low <= int(word) <= high:
        raise Refused(f"expected a number from {low} to {high}")
    return int(word)


def archive(word):
    if not NAME.match(word):
        raise Refused("an archive name holds only letters, digits and ._:+-")
    return word


def own_archives(name_prefix):
    """borg's glob for the archives this prefix names: PREFIX-YYYY-MM-DDT..., and not those of a
    prefix that begins with this one (nas-2-2026-... is not nas's)."""
    return f"{name_prefix}-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*"


def prefix(word):
    if not PREFIX.match(word):
        raise Refused("an archive prefix holds only letters, digits and ._-")
    return word


def walk(config, parts, create=False):
    """A descriptor of the directory `parts` below the mirror, opened without following any
    symlink: a link planted in the mirror cannot lead out of it."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(config["mirror"], flags)
    except FileNotFoundError:
        # An unmounted disk, say: never created here, so the SD card does not fill up.
        fail(f"the mirror directory {config['mirror']} does not exist: No such file or directory")
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd


# ---- running borg ---------------------------------------------------------------------------


def repository(config):
    if not config["repository"]:
        raise Refused("this remote has no repository configured")
    return config["repository"]


# The longest passphrase taken: it is written into a pipe before borg reads it, and a pipe holds
# 64 KiB; a longer one would block the guard for good.
MAX_PASSPHRASE = 4096


def read_passphrase():
    """The client's stdin: the passphrase, or nothing (a file's final newline is not part of it)."""
    data = b""
    while len(data) <= MAX_PASSPHRASE:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        data += chunk
    if len(data) > MAX_PASSPHRASE:
        raise Refused(f"a passphrase is at most {MAX_PASSPHRASE} bytes")
    return data.rstrip(b"\r\n")


def start_borg(args, passphrase, cwd_fd=None, stdout=None, stderr=None, env=None):
    """Starts borg with an argv built here (the subcommand first, as borg's own usage writes it,
    and as wrappers read it). The passphrase goes through a pipe of its own (BORG_PASSPHRASE_FD),
    so several borg calls of one verb can each read it. `env`: variables of this side's own
    (a copy's BORG_RSH). SSH_ORIGINAL_COMMAND is not passed on: a guard that with-lock runs is
    the owner's, not the key's."""
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith("BORG_") and k != "SSH_ORIGINAL_COMMAND"},
           **BORG_ENV, **(env or {})}
    read_end, write_end = os.pipe()
    os.write(write_end, passphrase)
    os.close(write_end)
    env["BORG_PASSPHRASE_FD"] = str(read_end)
    try:
        return subprocess.Popen(
            [BORG, args[0], "--umask", "0027"] + args[1:],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            pass_fds=(read_end,),
            preexec_fn=(lambda: os.fchdir(cwd_fd)) if cwd_fd is not None else None,
        )
    except FileNotFoundError:
        missing(BORG)
    finally:
        os.close(read_end)


def borg(args, passphrase, cwd_fd=None, stdout=None, head=None, env=None, relay=None):
    """Runs borg to its end (see start_borg); its exit code. With `head`, only that many lines of
    its stdout are passed on and borg is stopped after them; with `relay`, each line of its
    stderr is given to it."""
    child = start_borg(args, passphrase, cwd_fd, subprocess.PIPE if head else stdout,
                       subprocess.PIPE if relay else None, env)
    if head:
        for _ in range(head):
            line = child.stdout.readline()
            if not line:
                break
            sys.stdout.buffer.write(line)
        sys.stdout.flush()
        child.stdout.close()
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.wait()
        return 0
    for line in child.stderr if relay else ():
        relay(line)
    return child.wait()


def pass_raw(line):
    sys.stderr.buffer.write(line)
    sys.stderr.flush()


def borg_locked(args, passphrase, wait, cwd_fd=None, stdout=None, env=None, relay=pass_raw):
    """Runs a borg that locks the repository (args: the subcommand first), waiting up to `wait`
    seconds for another borg's lock (another host's run): borg tries for a second, and is started
    again while time is left. borg's own --lock-wait would look again only every tenth of it (30 s
    of 5 minutes). Its stderr is passed on (to `relay`), but for the lock timeouts of the tries
    that are followed by another."""
    deadline = time.monotonic() + wait
    while True:
        child = start_borg([args[0], "--lock-wait", "1"] + args[1:], passphrase, cwd_fd,
                           stdout, subprocess.PIPE, env)
        timed_out = False
        for line in child.stderr:
            if b'"LockTimeout"' in line or b"(timeout)" in line:
                timed_out = True
                if time.monotonic() < deadline:
                    continue
            relay(line)
        code = child.wait()
        if not (timed_out and code == 2 and time.monotonic() < deadline):
            return code


def lock_is_held():
    """Whether a borg process runs on this machine (then a lock is not stale)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        words = [os.path.basename(a) for a in argv[:3]]
        if b"borg" in words and b"break-lock" not in argv:
            return True
    return False


# ---- the verbs ------------------------------------------------------------------------------


def version(argv):
    """A program's version line, or None when it is not installed."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True).stdout
    except OSError:
        return None
    return (out.splitlines() or [""])[0].strip()


def verb_hello(config, args):
    """Who answers: the guard and what it serves (asked at every connection: runs nothing)."""
    info = {
        "guard": VERSION,
        "mirror": config["mirror"],
        "repository": config["repository"] or None,
        "writable": os.access(config["mirror"], os.W_OK),
        "append_only": None,
        "copy": {"kind": config["copy"], "target": copy_shown(config)} if config["copy"] else None,
    }
    if config["repository"]:
        info["append_only"] = repository_append_only(config["repository"])
    print(json.dumps(info))
    return 0


def verb_versions(config, args):
    """The versions of rsync and borg here (null when one is not installed): the preflight."""
    print(json.dumps({"rsync": version([RSYNC, "--version"]),
                      "borg": version([BORG, "--version"])}))
    return 0


def repository_append_only(repo):
    try:
        with open(os.path.join(repo, "config"), encoding="utf-8") as f:
            return any(line.replace(" ", "").strip() == "append_only=1" for line in f)
    except OSError:
        return None


def remove_stamp(fd):
    try:
        os.unlink(STAMP, dir_fd=fd)
    except FileNotFoundError:
        pass


def verb_stamp_clear(config, args):
    (where,) = args
    remove_stamp(walk(config, mirror_dir(config, where), create=True))
    return 0


def verb_stamp_write(config, args):
    (where,) = args
    fd = walk(config, mirror_dir(config, where))
    remove_stamp(fd)
    out = os.open(STAMP, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
    os.write(out, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()).encode())
    os.close(out)
    return 0


def open_regular(name, dir_fd):
    """Opens NAME in DIR_FD for reading if it is a regular file, and refuses anything else
    without opening it: a fifo would hang the guard, and opening a device node can do something
    (a watchdog arms). The path is looked at through an O_PATH descriptor, which opens nothing."""
    path = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(path).st_mode):
            raise Refused(f"{name} is not a regular file")
        return os.open(f"/proc/self/fd/{path}", os.O_RDONLY | os.O_NONBLOCK)
    finally:
        os.close(path)


def verb_claim(config, args):
    """Which host the sidecar's mirror directory belongs to, by the name in its HOST_MARKER:
    HOST's (exit 0; the name is written there when there is none), another host's (its name on
    stdout, exit 5), or none because the directory is missing and MAKE is 0 (exit 6)."""
    host, make, where = prefix(args[0]), args[1], args[2]
    if make not in ("0", "1"):
        raise Refused("claim's MAKE is 0 or 1")
    try:
        fd = walk(config, mirror_dir(config, where), create=make == "1")
    except FileNotFoundError:
        return 6
    try:
        marker = open_regular(HOST_MARKER, fd)
    except FileNotFoundError:
        out = os.open(HOST_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                      dir_fd=fd)
        os.write(out, f"{host}\n".encode())
        os.close(out)
        print("claimed")
        return 0
    owner = os.read(marker, 256).decode(errors="replace").strip()
    os.close(marker)
    if owner == host:
        return 0
    print(owner)
    return 5


def verb_is_dir(config, args):
    (where,) = args
    try:
        os.close(walk(config, mirror_dir(config, where)))
    except OSError:
        return 1
    return 0


def verb_stat(config, args):
    """`SIZE MTIME` of a file in the mirror, the mtime as `stat %y` prints it."""
    (where,) = args
    parts = mirror_dir(config, where)
    if not parts:
        raise Refused("stat needs a file")
    try:
        fd = walk(config, parts[:-1])
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except OSError:
        return 1
    local = time.localtime(st.st_mtime_ns // 1_000_000_000)
    ns = st.st_mtime_ns % 1_000_000_000
    print(f"{st.st_size} {time.strftime('%Y-%m-%d %H:%M:%S', local)}.{ns:09d} "
          f"{time.strftime('%z', local)}")
    return 0


def verb_unlock_stale(config, args):
    """Breaks the repository's lock when no borg process runs: a killed run left it."""
    repo = repository(config)
    if not os.path.exists(os.path.join(repo, "lock.exclusive")):
        return 0
    if lock_is_held():
        print("held")
        return 0
    code = borg(["break-lock", repo], read_passphrase())
    if code == 0:
        print("broken")
    return code


def verb_snapshot(config, args):
    """`borg create` of the mirror directory, named PREFIX-<this machine's UTC time>, then
    `borg prune` of PREFIX-<time> (own_archives) with this side's retention."""
    name_prefix, wait, where = prefix(args[0]), number(args[1], 1, 86400), args[2]
    repo = repository(config)
    fd = complete_mirror(config, where, "refusing to snapshot")
    passphrase = read_passphrase()
    code = borg_locked(
        ["create", "--json", "--progress", "--log-json", f"{repo}::{archive_name(name_prefix)}",
         "."],
        passphrase,
        wait,
        cwd_fd=fd,
    )
    if code not in (0, 1):
        return code
    pruned = prune(config, name_prefix, repo, passphrase, wait)
    return pruned if pruned not in (0, 1) else code


def complete_mirror(config, where, refusal):
    """The mirror directory WHERE, if its last run completed (its STAMP); exit 3 if not."""
    fd = walk(config, mirror_dir(config, where))
    try:
        st = os.stat(STAMP, dir_fd=fd, follow_symlinks=False)
        complete = stat.S_ISREG(st.st_mode)
    except FileNotFoundError:
        complete = False
    if not complete:
        fail(f"{refusal}: the last run of the mirror did not complete (no {STAMP})", 3)
    return fd


def archive_name(name_prefix):
    return f"{name_prefix}-{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}"


def prune(config, name_prefix, repo, passphrase, wait, copy=False, **kwargs):
    """`borg prune` of own_archives(name_prefix) with this side's retention (for a copy, its
    copy_keep_* where set); 0 when no rule keeps anything, as nothing is pruned then."""
    rules = []
    for rule in ("within", "daily", "weekly", "monthly"):
        value = (copy and config[f"copy_keep_{rule}"]) or config[f"keep_{rule}"]
        if value and (not value.isdigit() or int(value) > 0):
            rules += [f"--keep-{rule}", value]
    if not rules:
        return 0
    sys.stdout.flush()
    return borg_locked(
        ["prune", "--log-json", "--glob-archives", own_archives(name_prefix)] + rules + [repo],
        passphrase,
        wait,
        stdout=subprocess.DEVNULL,
        **kwargs,
    )


def verb_list(config, args):
    """Every archive, as `borg list --json`."""
    return borg(["list", "--json", repository(config)], read_passphrase())


def verb_info(config, args):
    """Every archive's sizes, as `borg info --json`."""
    return borg(["info", "--json", "--glob-archives", "*", repository(config)], read_passphrase())


def verb_check(config, args):
    """`borg check` of the repository (never `--repair`)."""
    wait = number(args[0], 1, 86400)
    return borg(["check", "--lock-wait", str(wait), repository(config)], read_passphrase())


def verb_list_archive(config, args):
    """An archive's entries, one JSON object per line."""
    name = archive(args[0])
    return borg(["list", "--json-lines", f"{repository(config)}::{name}"], read_passphrase())


def verb_item(config, args):
    """The first entry under a path in an archive (the directory itself), one JSON line."""
    name, parts = archive(args[0]), hex_path(args[1])
    paths = [b"--", b"/".join(parts)] if parts else []
    return borg(["list", "--json-lines", f"{repository(config)}::{name}"] + paths,
                read_passphrase(), head=1)


def verb_sample(config, args):
    """Two sha256 lines: a file from an archive, then the mirror's file at MIRROR_PATH."""
    name, parts, mirror = archive(args[0]), hex_path(args[1]), mirror_dir(config, args[2])
    if not parts or not mirror:
        raise Refused("sample needs two files")
    try:
        fd = walk(config, mirror[:-1])
        file = open_regular(mirror[-1], fd)
    except Refused:
        fail("the mirror's copy is not a regular file")
    except OSError as e:
        fail(f"cannot open the mirror's copy: {e.strerror}")
    child = start_borg(
        ["extract", "--stdout", f"{repository(config)}::{name}", b"--", b"/".join(parts)],
        read_passphrase(),
        stdout=subprocess.PIPE,
    )
    digest = hashlib.sha256()
    for chunk in iter(lambda: child.stdout.read(1 << 20), b""):
        digest.update(chunk)
    if child.wait() != 0:
        return child.returncode
    print(f"{digest.hexdigest()}  -")
    digest = hashlib.sha256()
    with os.fdopen(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    print(f"{digest.hexdigest()}  -")
    return 0


def hook(config, key):
    command = config[key]
    if not command:
        return 0
    # The owner's own command from this side's configuration: the client cannot add to it.
    return subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                          stdout=sys.stderr).returncode


def verb_pre(config, args):
    """The remote's pre command (mount the disk, say)."""
    return hook(config, "pre_command")


def verb_post(config, args):
    """The remote's post command."""
    return hook(config, "post_command")


# ---- the second copy ------------------------------------------------------------------------


def copy_kind(config):
    if not config["copy"]:
        raise Refused("this remote has no copy configured (copy in its guard.conf)")
    return config["copy"]


def rclone_section(config):
    """The rclone config's section of the copy target's remote ({} when unreadable)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    name = config["copy_target"].split(":", 1)[0]
    try:
        parser.read(config["copy_config"], encoding="utf-8")
        return dict(parser[name]) if parser.has_section(name) else {}
    except (configparser.Error, UnicodeDecodeError):
        return {}


def copy_shown(config):
    """The copy's target as the client and the owner see it: rclone's NAME:PATH (TYPE), borg's
    ssh://…/PATH (who and where hidden)."""
    target = config["copy_target"]
    if config["copy"] == "rclone":
        return f"{target} ({rclone_section(config).get('type', 'unknown')})"
    return f"ssh://…{COPY_TARGET['borg'].match(target).group(3)}"


def copy_secrets(config):
    """What is replaced by … in every line passed on from a copy: the values of the rclone
    section but RCLONE_PLAIN's (and the host of a URL among them), or the borg target's
    user@host[:port] and host. Longest first."""
    if config["copy"] == "rclone":
        section = rclone_section(config)
        values = [v for k, v in section.items() if k not in RCLONE_PLAIN
                  and v.strip().lower() not in ("true", "false") and not v.strip().isdigit()]
        values += [re.sub(r"^[a-z]+://|[:/].*$", "", v) for v in values if "://" in v]
    else:
        user, where, _ = COPY_TARGET["borg"].match(config["copy_target"]).groups()
        host = re.sub(r":[0-9]+$", "", where)
        values = [f"{user}@{where}", f"{user}@{host}", host]
    return sorted({v for v in values if v.strip()}, key=len, reverse=True)


def tell(text):
    sys.stderr.buffer.write(text.encode("utf-8", "replace") + b"\n")
    sys.stderr.flush()


def progress(done, total=None, speed=None, eta=None, files=None):
    def num(value, kind):
        return kind(value) if isinstance(value, (int, float)) else None
    tell(json.dumps({"copy_progress": {"bytes": num(done, int) or 0, "total": num(total, int),
                                       "speed": num(speed, float), "eta": num(eta, int),
                                       "files": num(files, int)}}))


def pass_on(line, secrets):
    """One line of rclone's (--use-json-log) or borg's (--log-json, or plain) output for the
    client: rclone's stats and borg's archive_progress become copy_progress lines, a message goes
    on as text with the secrets (copy_secrets) replaced by …. Returns rclone's stats, or the text
    passed on (None for neither)."""
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if isinstance(entry, dict):
        stats = entry.get("stats")
        if isinstance(stats, dict):
            progress(stats.get("bytes"), stats.get("totalBytes"), stats.get("speed"),
                     stats.get("eta"), stats.get("transfers"))
            return stats
        if entry.get("type") == "archive_progress" and not entry.get("finished"):
            progress(entry.get("original_size"), files=entry.get("nfiles"))
        # rclone's messages, and borg's log messages (not its progress_message lines).
        message = entry.get("message") if entry.get("type") == "log_message" else \
            entry.get("msg")
        if message is None:
            return None
        text = f"{entry['object']}: {message}" if entry.get("object") else str(message)
    for secret in secrets:
        text = text.replace(secret, "…")
    text = ADDRESS.sub("…", text)
    tell(text)
    return text


def bwlimit_bytes(config):
    """copy_bwlimit in bytes per second (0: none)."""
    match = BWLIMIT.match(config["copy_bwlimit"])
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2) or " ") if match else 0


def staging_dir(repo):
    repo = repo.rstrip("/")
    return os.path.join(os.path.dirname(repo), f".{os.path.basename(repo)}.copy")


def staging_lock(config, wait):
    """The staging tree's lock (held until the file returned is closed), waited for up to `wait`
    seconds: another host's copy would swap the tree under this one's rclone."""
    lock = os.fdopen(os.open(f"{staging_dir(repository(config))}.lock",
                             os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "w")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                fail(f"copy: another copy of the repository is running (waited {wait} s)", 2)
            time.sleep(1)


def copy_stage(config):
    """The owner's `guard --copy-stage`, run by `copy` under borg with-lock: the repository as of
    its last commit, for rclone to send while borg goes on. Segments (data/) are hard-linked, as
    borg never changes one once written; the rest is copied with its mtime; the lock is left
    out. Built as STAGING.new, then swapped in."""
    repo = repository(config).rstrip("/")
    staging = staging_dir(repo)
    new, old = f"{staging}.new", f"{staging}.old"
    for left in (new, old):
        shutil.rmtree(left, ignore_errors=True)
    os.mkdir(new, 0o700)
    for top, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if not d.startswith("lock.")]
        rel = os.path.relpath(top, repo)
        into = os.path.normpath(os.path.join(new, rel))
        os.makedirs(into, exist_ok=True)
        place = os.link if rel.split(os.sep)[0] == "data" else shutil.copy2
        for name in files:
            if not name.startswith("lock."):
                place(os.path.join(top, name), os.path.join(into, name))
    if os.path.exists(staging):
        os.rename(staging, old)
    os.rename(new, staging)
    shutil.rmtree(old, ignore_errors=True)
    return 0


def rclone(config, command, extra, relay):
    """`rclone COMMAND STAGING TARGET` with the copy's rclone config and none of the guard's
    RCLONE_ variables, its JSON log given to `relay` (pass_on): (exit code, its last stats, the
    texts passed on)."""
    argv = [RCLONE, command, staging_dir(repository(config)), config["copy_target"],
            "--config", config["copy_config"], "--use-json-log", "--log-level", "NOTICE"] + extra
    try:
        child = subprocess.Popen(
            argv, env={k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        missing(RCLONE)
    stats, texts = {}, []
    for line in child.stdout:
        got = relay(line)
        if isinstance(got, dict):
            stats = got
        elif got is not None:
            texts.append(got)
    return child.wait(), stats, texts


def copy_borg_env(config):
    return {"BORG_RSH": f"ssh -F {shlex.quote(config['copy_config'])} -o BatchMode=yes"}


def copy_passphrase(config):
    """The second repository's passphrase, from copy_passphrase_file (without its newline)."""
    path = config["copy_passphrase_file"]
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PASSPHRASE + 2).rstrip(b"\r\n")
    except OSError as e:
        fail(f"copy: cannot read the copy's passphrase file {path}: {e.strerror}", 2)
    if len(data) > MAX_PASSPHRASE:
        fail(f"copy: a passphrase is at most {MAX_PASSPHRASE} bytes ({path})", 2)
    return data


def copy_rclone(config, wait, relay):
    """The repository, staged under its lock (copy_stage), then `rclone sync` to the target: what
    the sync would delete or replace is moved to TARGET.deleted/<time>, never deleted."""
    repo = repository(config)
    with staging_lock(config, wait):
        code = borg_locked(["with-lock", repo, sys.executable, os.path.realpath(__file__),
                            "--copy-stage"], b"", wait, stdout=subprocess.DEVNULL, relay=relay)
        if code != 0:
            fail(f"copy: could not stage the repository {repo} (exit {code})", code)
        when = time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())
        rate = bwlimit_bytes(config)
        code, stats, _ = rclone(config, "sync", ["--backup-dir",
                                                 f"{config['copy_target']}.deleted/{when}",
                                                 "--stats", "2s", "--stats-log-level", "NOTICE"]
                                + (["--bwlimit", f"{rate}B"] if rate else []), relay)
        if code == 0:
            # borg rewrites nonce (and config) in place at the same size: a place that keeps no
            # modification time or hash (WebDAV) would keep a stale one, and a repository
            # restored with a stale nonce could reuse AES counters. Both are sent every time.
            code, _, _ = rclone(config, "copy", ["--ignore-times", "--include", "/{nonce,config}"],
                                relay)
    if code != 0:
        fail(f"copy: rclone sync failed (exit {code})", code)
    return 0, stats.get("bytes", 0), stats.get("transfers", 0), None


def copy_borg(config, name_prefix, wait, where, relay):
    """`borg create` of the complete mirror directory into the second repository, then its prune
    (copy_keep_*). A killed copy's lock there is broken first when no borg runs here."""
    fd = complete_mirror(config, where, "copy: refusing to copy")
    target, passphrase, env = config["copy_target"], copy_passphrase(config), copy_borg_env(config)
    if not lock_is_held():
        code = borg(["break-lock", target], passphrase, stdout=subprocess.DEVNULL, env=env,
                    relay=relay)
        if code != 0:
            fail(f"copy: borg break-lock failed (exit {code})", code)
    rate = bwlimit_bytes(config)
    name = archive_name(name_prefix)
    with tempfile.TemporaryFile() as out:
        code = borg_locked(["create", "--json", "--progress", "--log-json"]
                           + (["--upload-ratelimit", str(max(1, rate // 1024))] if rate else [])
                           + [f"{target}::{name}", "."],
                           passphrase, wait, cwd_fd=fd, stdout=out, env=env, relay=relay)
        out.seek(0)
        try:
            created = json.loads(out.read() or b"{}")
        except ValueError:
            created = {}
    if code not in (0, 1):
        fail(f"copy: borg create failed (exit {code})", code)
    pruned = prune(config, name_prefix, target, passphrase, wait, copy=True, env=env, relay=relay)
    if pruned not in (0, 1):
        fail(f"copy: borg prune failed (exit {pruned})", pruned)
    stats = created.get("archive", {}).get("stats", {})
    return code, stats.get("deduplicated_size", 0), stats.get("nfiles", 0), name


def verb_copy(config, args):
    """The second copy, to this side's copy_target (copy_rclone, copy_borg): progress on stderr,
    a summary line on stdout."""
    name_prefix, wait, where = prefix(args[0]), number(args[1], 1, 86400), args[2]
    mirror_dir(config, where)
    kind = copy_kind(config)
    start = time.monotonic()
    relay = functools.partial(pass_on, secrets=copy_secrets(config))
    if kind == "rclone":
        code, sent, files, name = copy_rclone(config, wait, relay)
    else:
        code, sent, files, name = copy_borg(config, name_prefix, wait, where, relay)
    print(json.dumps({"kind": kind, "bytes": sent, "files": files,
                      "seconds": round(time.monotonic() - start, 3), "archive": name}))
    return code


def verb_copy_check(config, args):
    """Whether the copy matches: `rclone check` of the last staging tree against the target, or
    `borg check` of the second repository. Exit 0 when it does, 1 when it differs, another code
    when it could not be checked."""
    wait = number(args[0], 1, 86400)
    kind = copy_kind(config)
    relay = functools.partial(pass_on, secrets=copy_secrets(config))
    result = {"kind": kind, "ok": False, "differences": None, "matched": None, "hash": None}
    if kind == "borg":
        code = borg(["check", "--lock-wait", str(wait), config["copy_target"]],
                    copy_passphrase(config), stdout=subprocess.DEVNULL, env=copy_borg_env(config),
                    relay=relay)
        if code not in (0, 1):
            fail(f"copy-check: borg check failed (exit {code})", code)
        result["ok"] = code == 0
    else:
        with staging_lock(config, wait):
            if not os.path.isdir(staging_dir(repository(config))):
                fail("copy-check: no copy has been made yet", 2)
            code, _, texts = rclone(config, "check", [], relay)

        def count(pattern):
            found = [re.search(pattern, text) for text in texts]
            return next((int(m.group(1)) for m in reversed(found) if m), None)
        result.update(differences=count(r"\b(\d+) differences found"),
                      matched=count(r"\b(\d+) matching files"),
                      hash=not any("No common hash found" in text for text in texts))
        if result["differences"] is None or (result["differences"] == 0 and code != 0):
            fail(f"copy-check: rclone check failed (exit {code})", code if code > 1 else 2)
        result["ok"] = result["differences"] == 0
    print(json.dumps(result))
    return 0 if result["ok"] else 1


VERBS = {
    "hello": (verb_hello, 0),
    "versions": (verb_versions, 0),
    "stamp-clear": (verb_stamp_clear, 1),
    "stamp-write": (verb_stamp_write, 1),
    "is-dir": (verb_is_dir, 1),
    "stat": (verb_stat, 1),
    "unlock-stale": (verb_unlock_stale, 0),
    "claim": (verb_claim, 3),
    "snapshot": (verb_snapshot, 3),
    "list": (verb_list, 0),
    "info": (verb_info, 0),
    "check": (verb_check, 1),
    "list-archive": (verb_list_archive, 1),
    "item": (verb_item, 2),
    "sample": (verb_sample, 3),
    "pre": (verb_pre, 0),
    "post": (verb_post, 0),
    "copy": (verb_copy, 3),
    "copy-check": (verb_copy_check, 1),
}


def exec_rsync(config, words):
    """rsync's daemon protocol over ssh, into the one module `mirror`: the mirror directory,
    chrooted, so no path and no symlink leads out of it (rsyncd.conf holds the rest)."""
    if words != ["rsync", "--server", "--daemon", "."]:
        raise Refused("rsync is served only as `rsync --server --daemon .` (host::mirror/...)")
    if not config["mirror"]:
        raise Refused("this remote has no mirror directory configured")
    try:
        os.execvp(RSYNC, ["rsync", "--server", "--daemon", f"--config={RSYNCD_CONF}",
                          f"--dparam=path={config['mirror']}", "."])
    except FileNotFoundError:
        missing(RSYNC)


def exec_borg_serve(config, words):
    """borg serve for the client's borg (a restore's `borg extract`, listings): append-only,
    confined to the repository, and as the reader, who may read it but not write it."""
    if words[:2] != ["borg", "serve"]:
        raise Refused("only `borg serve` is served")
    repo = repository(config)
    try:
        reader = pwd.getpwnam(config["reader"])
    except KeyError:
        raise Refused(f"the reader user {config['reader']} does not exist (run guard --setup)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
           "LANG": "C.UTF-8"}
    env.update(BORG_ENV)
    os.execve("/usr/bin/setpriv", [
        "setpriv", f"--reuid={reader.pw_uid}", f"--regid={reader.pw_gid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        BORG, "serve", "--append-only", "--restrict-to-repository", repo,
    ], env)


def serve(command):
    """Answers one ssh request."""
    if command is None:
        fail("this key runs backup-sidecar's vocabulary only: no shell")
    if not command or any(not (32 <= ord(c) < 127) for c in command):
        fail("refused: the command must be printable ASCII")
    words = command.split()
    if not words:
        fail("refused: an empty command is not in this remote's vocabulary")
    config = load_config()
    try:
        if words[0] == "rsync":
            exec_rsync(config, words)
        if words[0] == "borg":
            exec_borg_serve(config, words)
        if words[0] != VERB_PROGRAM:
            raise Refused(f"{words[0]!r} is not in this remote's vocabulary")
        if len(words) < 2 or words[1] not in VERBS:
            raise Refused(f"{' '.join(words[1:2])!r} is not one of the guard's verbs")
        run, count = VERBS[words[1]]
        args = words[2:]
        if len(args) != count:
            raise Refused(f"{words[1]} takes {count} argument(s)")
        sys.exit(run(config, args))
    except Refused as e:
        fail(f"refused: {e}")
    except OSError as e:
        fail(f"{words[1] if len(words) > 1 else words[0]}: {e.strerror}: {e.filename or ''}")


# ---- the owner's commands on the remote ------------------------------------------------------


def setup(config):
    """Idempotent: the mirror directory, the reader, the repository (append-only, group-readable
    by the reader, so that its borg serve can read it). The passphrase, if any, on stdin."""
    os.makedirs(config["mirror"], mode=0o755, exist_ok=True)
    print(f"mirror directory {config['mirror']}")
    try:
        reader = pwd.getpwnam(config["reader"])
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                        "/nonexistent", "--shell", "/usr/sbin/nologin", config["reader"]],
                       check=True)
        reader = pwd.getpwnam(config["reader"])
        print(f"created the reader user {config['reader']}")
    code = setup_repository(config, reader) if config["repository"] else 0
    return code or setup_copy(config)


def setup_repository(config, reader):
    repo = config["repository"]
    passphrase = read_passphrase()
    if not os.path.exists(os.path.join(repo, "config")):
        if not passphrase:
            print(f"no repository at {repo} yet: run guard --setup with its passphrase on stdin")
            return 0
        code = borg(["init", "--append-only", "-e", "repokey", repo], passphrase)
        if code != 0:
            return code
        print(f"created the repository {repo} (repokey, append-only)")
    elif not repository_append_only(repo):
        code = borg(["config", repo, "append_only", "1"], passphrase)
        if code != 0:
            return code
        print(f"made the repository {repo} append-only")
    # The reader's group owns the repository; directories pass it on (setgid), and every borg the
    # guard runs writes with umask 0027, so the reader can read what is added later.
    for top, dirs, files in os.walk(repo):
        for name in [top] + [os.path.join(top, f) for f in files]:
            os.chown(name, -1, reader.pw_gid, follow_symlinks=False)
        os.chmod(top, (os.stat(top).st_mode & 0o7777) | 0o2050)
        for f in files:
            path = os.path.join(top, f)
            os.chmod(path, (os.stat(path).st_mode & 0o7777) | 0o040)
    os.chmod(repo, (os.stat(repo).st_mode & 0o7777) | 0o2050)
    print(f"repository {repo} is append-only and readable by {config['reader']}")
    return 0


def setup_copy(config):
    """Where the copy goes, a warning for its secrets readable by others, and for borg its
    second repository (repokey, with copy_passphrase_file's passphrase) when there is none yet.
    Never fails: what is wrong with the copy is a warning."""
    kind = config["copy"]
    if not kind:
        return 0
    print(f"copy {kind} to {copy_shown(config)}")
    secrets = [config["copy_config"]] + ([config["copy_passphrase_file"]] if kind == "borg" else [])
    for path in secrets:
        try:
            if os.stat(path).st_mode & 0o044:
                print(f"warning: {path} is readable by group or others: chmod 600 {path}")
        except FileNotFoundError:
            print(f"warning: {path} does not exist")
    if kind != "borg":
        return 0
    target, passphrase, env = config["copy_target"], copy_passphrase(config), copy_borg_env(config)
    child = start_borg(["list", "--short", "--last", "1", target], passphrase,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = child.stderr.read()
    if child.wait() == 0:
        print(f"the copy's repository {copy_shown(config)} exists")
        return 0
    # Not reaching the second host is a warning: the remote still starts (the entrypoint runs
    # this), and each copy fails, and says so, until it can reach it.
    if b"does not exist" not in err:
        sys.stderr.buffer.write(err)
        tell(f"warning: cannot open the copy's repository {copy_shown(config)} "
             f"(exit {child.returncode}): the copies fail until it opens")
        return 0
    code = borg(["init", "--encryption", "repokey", target], passphrase, env=env)
    if code == 0:
        print(f"created the copy's repository {copy_shown(config)} (repokey)")
    else:
        tell(f"warning: cannot create the copy's repository {copy_shown(config)} (exit {code})")
    return 0


def compact(config):
    """The owner's compaction: only when the transactions look right (see the README)."""
    repo = repository(config)
    passphrase = read_passphrase()
    for args in (["check", repo], ["config", repo, "append_only", "0"], ["compact", repo]):
        code = borg(args, passphrase)
        if code not in (0, 1):
            borg(["config", repo, "append_only", "1"], passphrase)
            return code
    return borg(["config", repo, "append_only", "1"], passphrase)


def transactions(repo):
    """The repository's transaction log: (segment, line) per commit, oldest first."""
    log = []
    with open(os.path.join(repo, "transactions"), encoding="utf-8") as f:
        for line in f:
            match = re.match(r"^transaction (\d+),", line)
            if match:
                log.append((int(match.group(1)), line.strip()))
    return log


def rollback(config, to):
    """borg's documented rollback of an append-only repository to the commit `to`: the index,
    hints and integrity files and the segments written after it are moved to a directory next
    to the repository (kept for forensics), the client cache is dropped and the manifest
    timestamp forgotten. Without `to`, lists the transactions."""
    repo = repository(config)
    log = transactions(repo)
    if to is None:
        for _, line in log:
            print(line)
        return 0
    if to not in [segment for segment, _ in log]:
        raise Refused(f"no transaction {to} in {repo}/transactions")
    if os.path.exists(os.path.join(repo, "lock.exclusive")):
        raise Refused("the repository is locked: stop the sidecar's runs first")
    aside = f"{repo.rstrip('/')}.rolled-back-{time.strftime('%Y%m%dT%H%M%S')}"
    os.makedirs(os.path.join(aside, "data"))
    moved = 0
    for name in os.listdir(repo):
        match = re.match(r"^(index|hints|integrity)\.(\d+)$", name)
        if match and int(match.group(2)) > to:
            os.rename(os.path.join(repo, name), os.path.join(aside, name))
    for top, _, files in os.walk(os.path.join(repo, "data")):
        for name in files:
            if name.isdigit() and int(name) > to:
                os.rename(os.path.join(top, name), os.path.join(aside, "data", name))
                moved += 1
    # The cache and the manifest timestamp remember the rolled-back state: forget both (what
    # `borg delete --cache-only` and removing security/ID/manifest-timestamp do).
    with open(os.path.join(repo, "config"), encoding="utf-8") as f:
        ids = [line.split("=", 1)[1].strip() for line in f
               if line.replace(" ", "").startswith("id=")]
    for repo_id in ids:
        shutil.rmtree(os.path.expanduser(f"~/.cache/borg/{repo_id}"), ignore_errors=True)
        try:
            os.unlink(os.path.expanduser(f"~/.config/borg/security/{repo_id}/manifest-timestamp"))
        except FileNotFoundError:
            pass
    print(f"rolled {repo} back to transaction {to}: moved {moved} segment(s) to {aside}")
    print("run borg check, then borg list, to see the repository as it was")
    return 0


def main():
    # The key's forced command names the guard without arguments, so these are reachable only by
    # someone with a login on this machine (the owner, or init before it restricts the key).
    owner = "SSH_ORIGINAL_COMMAND" not in os.environ
    flag = sys.argv[1] if len(sys.argv) >= 2 else None
    if owner and flag in ("--setup", "--compact", "--rollback", "--copy-stage"):
        config = load_config()
        try:
            if sys.argv[1] == "--setup":
                sys.exit(setup(config))
            if sys.argv[1] == "--compact":
                sys.exit(compact(config))
            if sys.argv[1] == "--copy-stage":
                sys.exit(copy_stage(config))
            to = sys.argv[2] if len(sys.argv) > 2 else None
            if to is not None and not to.isdigit():
                raise Refused("--rollback takes a transaction number (guard --rollback lists them)")
            sys.exit(rollback(config, int(to) if to is not None else None))
        except Refused as e:
            fail(str(e))
        except OSError as e:
            fail(f"{sys.argv[1][2:]}: {e.strerror}: {e.filename or ''}")
    serve(os.environ.get("SSH_ORIGINAL_COMMAND"))


if __name__ == "__main__":
    main()
