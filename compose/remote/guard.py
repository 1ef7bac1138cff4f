#!/usr/bin/python3
"""backup-sidecar's remote guard: the forced command of the sidecar's ssh key.

Installed as /usr/local/lib/backup-sidecar/guard and named in the key's authorized_keys line:

    restrict,command="/usr/local/lib/backup-sidecar/guard" ssh-ed25519 AAAA... backup-sidecar

It reads SSH_ORIGINAL_COMMAND, never hands it to a shell, and runs only this vocabulary:

    rsync --server --daemon .      rsync's daemon protocol, chrooted into the mirror directory
    borg serve ...                 borg serve --append-only --restrict-to-repository REPO, as the
                                   unprivileged reader (restores and listings)
    backup-sidecar-guard VERB ...  the run's other steps, each built here (see VERBS)

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
"""

import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

VERSION = "1"
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
}
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
    for key in ("keep_daily", "keep_weekly", "keep_monthly"):
        if not config[key].isdigit():
            raise SystemExit(f"backup-sidecar guard: {CONFIG}: {key} must be a number")
    if config["keep_within"] and not WITHIN.match(config["keep_within"]):
        raise SystemExit(f"backup-sidecar guard: {CONFIG}: keep_within must look like 2d or 12H")
    for key in ("mirror", "repository"):
        if config[key] and not config[key].startswith("/"):
            raise SystemExit(f"backup-sidecar guard: {CONFIG}: {key} must be an absolute path")
    config["mirror"] = os.path.realpath(config["mirror"]) if config["mirror"] else ""
    return config


def missing(program):
    """rsync or borg is not installed: the shell's words and code, read the same way."""
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


def start_borg(args, passphrase, cwd_fd=None, stdout=None, stderr=None):
    """Starts borg with an argv built here (the subcommand first, as borg's own usage writes it,
    and as wrappers read it). The passphrase goes through a pipe of its own (BORG_PASSPHRASE_FD),
    so several borg calls of one verb can each read it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
    env.update(BORG_ENV)
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


def borg(args, passphrase, cwd_fd=None, stdout=None, head=None):
    """Runs borg to its end (see start_borg); its exit code. With `head`, only that many lines of
    its stdout are passed on and borg is stopped after them."""
    child = start_borg(args, passphrase, cwd_fd, subprocess.PIPE if head else stdout)
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
    return child.wait()


def borg_locked(args, passphrase, wait, cwd_fd=None, stdout=None):
    """Runs a borg that locks the repository (args: the subcommand first), waiting up to `wait`
    seconds for another borg's lock (another host's run): borg tries for a second, and is started
    again while time is left. borg's own --lock-wait would look again only every tenth of it (30 s
    of 5 minutes). Its stderr is passed on, but for the lock timeouts of the tries that are
    followed by another."""
    deadline = time.monotonic() + wait
    while True:
        child = start_borg([args[0], "--lock-wait", "1"] + args[1:], passphrase, cwd_fd,
                           stdout, subprocess.PIPE)
        timed_out = False
        for line in child.stderr:
            if b'"LockTimeout"' in line or b"(timeout)" in line:
                timed_out = True
                if time.monotonic() < deadline:
                    continue
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
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
    fd = walk(config, mirror_dir(config, where))
    try:
        st = os.stat(STAMP, dir_fd=fd, follow_symlinks=False)
        complete = stat.S_ISREG(st.st_mode)
    except FileNotFoundError:
        complete = False
    if not complete:
        fail(f"refusing to snapshot: the last run of the mirror did not complete (no {STAMP})", 3)
    passphrase = read_passphrase()
    name = f"{name_prefix}-{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}"
    code = borg_locked(
        ["create", "--json", "--progress", "--log-json", f"{repo}::{name}", "."],
        passphrase,
        wait,
        cwd_fd=fd,
    )
    if code not in (0, 1):
        return code
    rules = []
    if config["keep_within"]:
        rules += ["--keep-within", config["keep_within"]]
    for rule in ("daily", "weekly", "monthly"):
        if int(config[f"keep_{rule}"]) > 0:
            rules += [f"--keep-{rule}", config[f"keep_{rule}"]]
    if rules:
        sys.stdout.flush()
        pruned = borg_locked(
            ["prune", "--log-json", "--glob-archives", own_archives(name_prefix)] + rules + [repo],
            passphrase,
            wait,
            stdout=subprocess.DEVNULL,
        )
        if pruned not in (0, 1):
            return pruned
    return code


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
    repo = config["repository"]
    if not repo:
        return 0
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
    if owner and len(sys.argv) >= 2 and sys.argv[1] in ("--setup", "--compact", "--rollback"):
        config = load_config()
        try:
            if sys.argv[1] == "--setup":
                sys.exit(setup(config))
            if sys.argv[1] == "--compact":
                sys.exit(compact(config))
            to = sys.argv[2] if len(sys.argv) > 2 else None
            if to is not None and not to.isdigit():
                raise Refused("--rollback takes a transaction number (guard --rollback lists them)")
            sys.exit(rollback(config, int(to) if to is not None else None))
        except Refused as e:
            fail(str(e))
    serve(os.environ.get("SSH_ORIGINAL_COMMAND"))


if __name__ == "__main__":
    main()
