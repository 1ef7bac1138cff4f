"""Unit tests of the remote guard (guard.py), with the standard library only.

    python3 -m unittest discover -s compose/remote -v      (scripts/guard-tests.sh runs them)

Nothing here runs rsync or borg, and nothing needs root: os.execvp and os.execve are replaced by a
stand-in that raises, subprocess.Popen by FakeBorg (which records each borg's argv, environment and
the passphrase read from its pipe), the configuration by a dictionary pointing at a temporary
mirror directory. rclone is run for real (CopyRclone, into a local-type remote) when installed.
Not installed on the remote: compose/remote/Dockerfile copies the files it needs by name, and `init`
installs only guard.py and rsyncd.conf.
"""

import errno
import fcntl
import fnmatch
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import guard  # noqa: E402

PROGRAM = "backup-sidecar-guard"
# The vocabulary and each verb's argument count, written out again: a verb added, removed or
# given another count has to be changed here too, on purpose.
VOCABULARY = {
    "hello": 0,
    "versions": 0,
    "stamp-clear": 1,
    "stamp-write": 1,
    "is-dir": 1,
    "stat": 1,
    "unlock-stale": 0,
    "claim": 3,
    "snapshot": 3,
    "list": 0,
    "info": 0,
    "check": 1,
    "list-archive": 1,
    "item": 2,
    "sample": 3,
    "pre": 0,
    "post": 0,
    "copy": 3,
    "copy-check": 1,
}
# A fixed UTC time for archive names and stamps: 2026-11-30T03:00:00.
NOW = time.struct_time((2026, 11, 30, 3, 0, 0, 0, 334, 0))


def sha256sum(data):
    return f"{hashlib.sha256(data).hexdigest()}  -\n"


def h(path):
    """A path as the sidecar sends it: hex of its bytes."""
    return os.fsencode(path).hex()


class Executed(Exception):
    """os.execvp or os.execve was called: a real one would not have returned."""


class Stream:
    """A stand-in for sys.stdout or sys.stderr, with the binary buffer the guard also writes to."""

    def __init__(self):
        self.raw = io.BytesIO()
        self.text = io.TextIOWrapper(self.raw, encoding="utf-8", write_through=True)

    def value(self):
        self.text.flush()
        return self.raw.getvalue().decode("utf-8", "replace")

    def clear(self):
        self.text.flush()
        self.raw.seek(0)
        self.raw.truncate()


class FakeChild:
    """What FakeBorg returns in place of a Popen: plays the given output and exit code."""

    def __init__(self, kwargs, code, stdout, stderr):
        self.code = code
        self.returncode = None
        self.stdout = io.BytesIO(stdout) if kwargs.get("stdout") == subprocess.PIPE else None
        self.stderr = io.BytesIO(stderr) if kwargs.get("stderr") == subprocess.PIPE else None
        if hasattr(kwargs.get("stdout"), "write"):  # a file, as borg's stdout is
            kwargs["stdout"].write(stdout)
        self.signals = []

    def poll(self):
        return self.returncode

    def send_signal(self, signum):
        self.signals.append(signum)

    def wait(self):
        self.returncode = self.code
        return self.code


class Call:
    def __init__(self, argv, kwargs, passphrase, child):
        self.argv = argv
        self.kwargs = kwargs
        self.env = kwargs["env"]
        self.passphrase = passphrase
        self.child = child


class FakeBorg:
    """Stands in for subprocess.Popen. Each call takes the next of `codes` (the last one repeats),
    `stdout` and `stderr`; reads the passphrase from the descriptor the environment names, as
    borg would."""

    def __init__(self, codes=(0,), stdout=b"", stderr=b"", on_start=None):
        self.codes = list(codes)
        self.stdout = stdout
        self.stderr = stderr
        self.on_start = on_start
        self.calls = []

    def __call__(self, argv, **kwargs):
        fd = int(kwargs["env"]["BORG_PASSPHRASE_FD"])
        if kwargs.get("pass_fds") != (fd,):
            raise AssertionError(f"the passphrase's descriptor is not passed: {kwargs}")
        passphrase = os.read(fd, 1 << 20)
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        child = FakeChild(kwargs, code, self.stdout, self.stderr)
        self.calls.append(Call(argv, kwargs, passphrase, child))
        if self.on_start:
            self.on_start()
        return child

    @property
    def argvs(self):
        return [call.argv for call in self.calls]


class GuardTest(unittest.TestCase):
    """A temporary mirror directory (and a directory outside it), the configuration that names
    it, and sys.stdout and sys.stderr captured. No process can be started (a borg would fail the
    test) but by a class that says it runs some."""

    runs_processes = False

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = os.path.realpath(tmp.name)
        self.mirror = os.path.join(self.tmp, "mirror")
        self.outside = os.path.join(self.tmp, "outside")
        self.repo = os.path.join(self.tmp, "borg")
        os.mkdir(self.mirror)
        os.mkdir(self.outside)
        self.config = dict(guard.DEFAULTS, mirror=self.mirror, repository=self.repo)
        self.stdout = Stream()
        self.stderr = Stream()
        self.patch(sys, "stdout", self.stdout.text)
        self.patch(sys, "stderr", self.stderr.text)
        if not self.runs_processes:
            self.patch(guard.subprocess, "Popen", side_effect=AssertionError("a process started"))

    def patch(self, target, name, value=mock.DEFAULT, **kwargs):
        patcher = mock.patch.object(target, name, value, **kwargs)
        started = patcher.start()
        self.addCleanup(patcher.stop)
        return started

    def fake_borg(self, **kwargs):
        """Replaces Popen for the rest of the test; the client's passphrase is `s3cret`."""
        fake = FakeBorg(**kwargs)
        self.patch(guard.subprocess, "Popen", fake)
        self.patch(guard, "read_passphrase", return_value=b"s3cret")
        return fake

    def serve(self, command, config=None):
        """Runs guard.serve(command) against this test's configuration: the exit code, or 'exec'
        when it called exec; stdout and stderr as written."""
        config = dict(self.config if config is None else config)
        self.stdout.clear()
        self.stderr.clear()
        with mock.patch.object(guard, "load_config", return_value=config), \
                mock.patch.object(guard.os, "execvp", side_effect=Executed) as execvp, \
                mock.patch.object(guard.os, "execve", side_effect=Executed) as execve:
            self.execvp, self.execve = execvp, execve
            try:
                guard.serve(command)
            except SystemExit as e:
                code = e.code
            except Executed:
                code = "exec"
            else:
                self.fail(f"serve({command!r}) returned without exiting")
        return code, self.stdout.value(), self.stderr.value()

    def assertRefused(self, command, message="refused", config=None):
        code, out, err = self.serve(command, config)
        self.assertEqual(code, 1, f"{command!r}: {err}")
        self.assertEqual(out, "", command)
        self.assertTrue(err.startswith("backup-sidecar guard: "), err)
        self.assertIn(message, err, command)
        self.execvp.assert_not_called()
        self.execve.assert_not_called()
        return err

    def mkdirs(self, *parts):
        path = os.path.join(self.mirror, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    def write(self, path, data=b""):
        with open(path, "wb") as f:
            f.write(data)
        return path


# ---- serve(): the command line ----------------------------------------------------------------


class Vocabulary(GuardTest):
    def setUp(self):
        super().setUp()
        # Every verb replaced by a spy: these tests are about which words reach a verb.
        self.spies = {}
        table = {}
        for verb, (_, count) in guard.VERBS.items():
            spy = mock.Mock(return_value=0, name=verb)
            self.spies[verb] = spy
            table[verb] = (spy, count)
        patcher = mock.patch.dict(guard.VERBS, table)
        patcher.start()
        self.addCleanup(patcher.stop)

    def assertNothingRan(self):
        for verb, spy in self.spies.items():
            spy.assert_not_called()

    def test_the_vocabulary_is_the_documented_one(self):
        self.assertEqual({verb: count for verb, (_, count) in guard.VERBS.items()}, VOCABULARY)
        self.assertEqual(guard.VERB_PROGRAM, PROGRAM)

    def test_no_command_is_no_shell(self):
        loaded = mock.Mock()
        with mock.patch.object(guard, "load_config", loaded), self.assertRaises(SystemExit) as e:
            guard.serve(None)
        self.assertEqual(e.exception.code, 1)
        self.assertEqual(self.stderr.value(),
                         "backup-sidecar guard: this key runs backup-sidecar's vocabulary only: "
                         "no shell\n")
        loaded.assert_not_called()
        self.assertNothingRan()

    def test_an_empty_command_is_refused(self):
        self.assertRefused("", "the command must be printable ASCII")
        self.assertNothingRan()

    def test_only_spaces_is_an_empty_command(self):
        for command in (" ", "   "):
            with self.subTest(command=command):
                self.assertRefused(command, "refused: an empty command is not in this remote's "
                                   "vocabulary")
        self.assertNothingRan()

    def test_only_printable_ascii(self):
        for command in (
            f"{PROGRAM}\thello",  # split() would read a tab as a space
            f"{PROGRAM} hello\n",
            f"{PROGRAM} hello\nrm -rf /",
            f"{PROGRAM} hello\r",
            f"{PROGRAM} hello\x00",
            f"{PROGRAM} hello\x7f",
            f"{PROGRAM} hello\x1b[2J",
            f"{PROGRAM}\u00a0hello",  # a no-break space, which split() splits on too
            f"{PROGRAM} hell\u00f6",
            f"{PROGRAM} hello \u2028",
            f"{PROGRAM} stat 636166\u00e9\u3000",
        ):
            with self.subTest(command=command):
                self.assertRefused(command, "refused: the command must be printable ASCII")
        self.assertNothingRan()

    def test_programs_outside_the_vocabulary(self):
        for command in (
            "sh",
            "sh -c id",
            "bash -i",
            "/bin/sh -c true",
            "scp -t /root/.ssh/authorized_keys",
            "scp -f /etc/shadow",
            "/usr/lib/openssh/sftp-server",
            "internal-sftp",
            "rrsync /",
            "/usr/bin/rsync --server --daemon .",
            "/usr/bin/borg serve",
            "borgbackup serve",
            "python3 -c print(1)",
            "guard --setup",
            "--setup",
            "backup-sidecar-guard2 hello",
            "Backup-Sidecar-Guard hello",
            "hello",
        ):
            with self.subTest(command=command):
                word = command.split()[0]
                self.assertRefused(command, f"refused: {word!r} is not in this remote's vocabulary")
        self.assertNothingRan()

    def test_unknown_verbs(self):
        for verb in ("", "HELLO", "Hello", "hello-", "stamp_clear", "stampclear", "setup",
                     "--setup", "--compact", "--rollback", "compact", "rollback", "serve",
                     "verb_hello", "main", "__class__", "prune", "delete", "create", "extract",
                     "break-lock", "init", "key", "config", "-h", "--copy-stage", "copy-stage",
                     "copy_check", "copycheck", "Copy", "rclone", "sync"):
            with self.subTest(verb=verb):
                err = self.assertRefused(f"{PROGRAM} {verb}".strip(),
                                         "is not one of the guard's verbs")
                self.assertIn(f"refused: {verb!r} is not one of the guard's verbs", err)
        self.assertNothingRan()

    def test_each_verb_takes_exactly_its_count(self):
        for verb, count in VOCABULARY.items():
            for wrong in (count - 1, count + 1, count + 5):
                if wrong < 0:
                    continue
                command = " ".join([PROGRAM, verb] + [f"a{i}" for i in range(wrong)])
                with self.subTest(command=command):
                    self.assertRefused(command, f"refused: {verb} takes {count} argument(s)")
                    self.assertNothingRan()

    def test_each_verb_gets_its_arguments_and_its_exit_code_is_the_guards(self):
        for verb, count in VOCABULARY.items():
            args = [f"a{i}" for i in range(count)]
            spy = self.spies[verb]
            spy.reset_mock()
            spy.return_value = 40 + count
            with self.subTest(verb=verb):
                # Runs of spaces are one separator, as sshd's client would send it anyway.
                code, out, err = self.serve("  ".join([PROGRAM, verb] + args))
                self.assertEqual((code, err), (40 + count, ""))
                spy.assert_called_once_with(self.config, args)
                for other, other_spy in self.spies.items():
                    if other != verb:
                        other_spy.assert_not_called()
                spy.reset_mock()


class Rsync(GuardTest):
    def test_the_daemon_protocol_into_the_mirror(self):
        code, out, err = self.serve("rsync --server --daemon .")
        self.assertEqual((code, out, err), ("exec", "", ""))
        self.execvp.assert_called_once_with("rsync", [
            "rsync", "--server", "--daemon", f"--config={guard.RSYNCD_CONF}",
            f"--dparam=path={self.mirror}", ".",
        ])
        self.assertEqual(guard.RSYNCD_CONF, os.path.join(HERE, "rsyncd.conf"))
        self.execve.assert_not_called()

    def test_only_exactly_that(self):
        for command in (
            "rsync",
            "rsync --server",
            "rsync --server --daemon",
            "rsync --server --daemon . .",
            "rsync --server --daemon / ",
            "rsync --server --daemon ..",
            "rsync --daemon --server .",
            "rsync --server --daemon --config=/tmp/evil.conf .",
            "rsync --server --daemon --dparam=path=/ .",
            "rsync --server -vlogDtpre.iLsfxC . /root/.ssh/",
            "rsync --server --sender -vlogDtpre.iLsfxC . /etc/shadow",
            "rsync --server -e.LsfxCIvu --delete . /",
            "rsync -e.LsfxCIvu --server --daemon .",
            "rsync --server --daemon=. .",
            "rsync --version",
        ):
            with self.subTest(command=command):
                self.assertRefused(command, "refused: rsync is served only as "
                                   "`rsync --server --daemon .`")

    def test_no_mirror_configured(self):
        self.assertRefused("rsync --server --daemon .", "no mirror directory configured",
                           config=dict(self.config, mirror=""))

    def test_rsync_not_installed(self):
        with mock.patch.object(guard, "load_config", return_value=self.config), \
                mock.patch.object(guard.os, "execvp", side_effect=FileNotFoundError), \
                self.assertRaises(SystemExit) as e:
            guard.serve("rsync --server --daemon .")
        self.assertEqual(e.exception.code, 127)
        self.assertEqual(self.stderr.value(), "backup-sidecar guard: rsync: command not found\n")


class BorgServe(GuardTest):
    def setUp(self):
        super().setUp()
        self.reader = mock.Mock(pw_uid=998, pw_gid=997)
        self.getpwnam = self.patch(guard.pwd, "getpwnam", return_value=self.reader)

    def test_append_only_confined_and_as_the_reader_whatever_the_client_adds(self):
        environ = {"PATH": "/usr/local/bin:/usr/bin:/bin", "BORG_PASSPHRASE": "leak",
                   "BORG_RSH": "sh -c id", "BORG_REPO": "/", "LD_PRELOAD": "/tmp/x.so",
                   "PYTHONPATH": "/tmp", "HOME": "/root"}
        for command in ("borg serve",
                        "borg serve --umask=077 --info",
                        "borg serve --restrict-to-path / --restrict-to-repository /",
                        "borg serve --storage-quota 0 --append-only"):
            with self.subTest(command=command), mock.patch.dict(os.environ, environ, clear=True):
                code, out, err = self.serve(command)
                self.assertEqual((code, out, err), ("exec", "", ""))
                self.execve.assert_called_once_with("/usr/bin/setpriv", [
                    "setpriv", "--reuid=998", "--regid=997", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
                    "borg", "serve", "--append-only", "--restrict-to-repository", self.repo,
                ], {
                    "PATH": "/usr/local/bin:/usr/bin:/bin",
                    "HOME": "/nonexistent",
                    "LANG": "C.UTF-8",
                    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
                    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
                    "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
                    "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
                })
                self.execvp.assert_not_called()
        self.getpwnam.assert_called_with("backup-sidecar-reader")

    def test_other_borg_commands(self):
        for command in ("borg", "borg init -e none /tmp/r", "borg list /backup/borg",
                        "borg delete /backup/borg", "borg with-lock /backup/borg sh",
                        "borg --version", "borg Serve", "borg -v serve", "borg serve-x"):
            with self.subTest(command=command):
                self.assertRefused(command, "refused: only `borg serve` is served")

    def test_no_repository_configured(self):
        self.assertRefused("borg serve", "refused: this remote has no repository configured",
                           config=dict(self.config, repository=""))

    def test_no_reader_user(self):
        self.getpwnam.side_effect = KeyError("backup-sidecar-reader")
        self.assertRefused("borg serve",
                           "refused: the reader user backup-sidecar-reader does not exist")


# ---- arguments --------------------------------------------------------------------------------


class Arguments(GuardTest):
    def test_hex_path(self):
        self.assertEqual(guard.hex_path(""), [])
        self.assertEqual(guard.hex_path("2e"), [])
        self.assertEqual(guard.hex_path(h("a")), [b"a"])
        self.assertEqual(guard.hex_path(h("a/b c/-rf")), [b"a", b"b c", b"-rf"])
        self.assertEqual(guard.hex_path("FF2F0A"), [b"\xff", b"\n"])
        self.assertEqual(guard.hex_path(h("...")), [b"..."])
        self.assertEqual(guard.hex_path(h("..a/.b")), [b"..a", b".b"])

    def test_hex_path_refuses(self):
        for path in ("/", "/etc", "..", "../x", "a/..", "a/../b", "a/../../etc", "./a", "a/.",
                     "a//b", "a/", "//", "a\0b", "\0"):
            with self.subTest(path=path), self.assertRaises(guard.Refused) as e:
                guard.hex_path(h(path))
            self.assertIn("relative", str(e.exception))
        for word in ("zz", "6", "612", "0x61", "61/62", "-61", "ab;"):
            with self.subTest(word=word), self.assertRaises(guard.Refused) as e:
                guard.hex_path(word)
            self.assertEqual(str(e.exception), "a path must be hex-encoded")

    def test_mirror_dir(self):
        m = self.mirror
        for path, parts in ((m, []), (m + "/", []), (m + "//", []), (m + "/.", []),
                            (m + "/nas", [b"nas"]), (m + "/nas/", [b"nas"]),
                            (m + "/nas/vol 1/-x", [b"nas", b"vol 1", b"-x"])):
            with self.subTest(path=path):
                self.assertEqual(guard.mirror_dir(self.config, h(path)), parts)

    def test_mirror_dir_refuses(self):
        m = self.mirror
        for path in ("/", "/etc", self.tmp, self.outside, m + "x", m + "x/nas", m[:-1],
                     m + "/../outside", m + "/nas/../../outside", m + "/..", m + "/nas/..",
                     m + "/./nas", m + "/nas//vol", m + "//nas", "mirror/nas", "nas",
                     m + "/nas\0", "." + m):
            with self.subTest(path=path), self.assertRaises(guard.Refused):
                guard.mirror_dir(self.config, h(path))
        with self.assertRaises(guard.Refused) as e:
            guard.mirror_dir(self.config, "zz")
        self.assertEqual(str(e.exception), "a path must be hex-encoded")

    def test_number(self):
        self.assertEqual(guard.number("1", 1, 86400), 1)
        self.assertEqual(guard.number("86400", 1, 86400), 86400)
        self.assertEqual(guard.number("0030", 1, 86400), 30)
        for word in ("0", "86401", "-1", "+5", "1.5", "1e3", "0x10", "", " 5", "5 ", "--repair",
                     "99999999999999999999"):
            with self.subTest(word=word), self.assertRaises(guard.Refused):
                guard.number(word, 1, 86400)

    def test_archive(self):
        for name in ("nas-2026-11-30T03:00:00", "a", "A.b_c:d+e-f", "9", "a" * 201):
            with self.subTest(name=name):
                self.assertEqual(guard.archive(name), name)
        for name in ("", "-a", "--help", "--json", ".a", "_a", ":a", "+a", "a b", "a/b",
                     "../a", "a*", "a?", "a[0]", "{now}", "a{now}", "a;id", "a$x", "a'",
                     "a\\b", "a=b", "a,b", "a@b", "a\u00e9", "a" * 202):
            with self.subTest(name=name), self.assertRaises(guard.Refused):
                guard.archive(name)

    def test_prefix(self):
        for name in ("nas", "nas-2", "a.b_c", "9", "a" * 101):
            with self.subTest(name=name):
                self.assertEqual(guard.prefix(name), name)
        for name in ("", "-p", "--glob-archives", ".a", "_a", "a:b", "a+b", "a*", "a?", "a[",
                     "a b", "a/b", "{hostname}", "a'", "a" * 102):
            with self.subTest(name=name), self.assertRaises(guard.Refused):
                guard.prefix(name)

    def test_repository(self):
        self.assertEqual(guard.repository(self.config), self.repo)
        with self.assertRaises(guard.Refused):
            guard.repository(dict(self.config, repository=""))


class Walk(GuardTest):
    def inode(self, fd):
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return st.st_dev, st.st_ino

    def same(self, path):
        st = os.stat(path)
        return st.st_dev, st.st_ino

    def test_the_mirror_and_below(self):
        self.mkdirs("nas", "vol")
        self.assertEqual(self.inode(guard.walk(self.config, [])), self.same(self.mirror))
        self.assertEqual(self.inode(guard.walk(self.config, [b"nas", b"vol"])),
                         self.same(os.path.join(self.mirror, "nas", "vol")))

    def test_missing_without_create(self):
        with self.assertRaises(FileNotFoundError):
            guard.walk(self.config, [b"nas", b"vol"])
        self.assertEqual(os.listdir(self.mirror), [])

    def test_create(self):
        fd = guard.walk(self.config, [b"nas", b"v\xffl", b"-x"], create=True)
        path = os.path.join(self.mirror, "nas", os.fsdecode(b"v\xffl"), "-x")
        self.assertEqual(self.inode(fd), self.same(path))
        self.assertTrue(stat.S_ISDIR(os.lstat(path).st_mode))
        # Existing directories are kept.
        self.write(os.path.join(path, "kept"))
        self.inode(guard.walk(self.config, [b"nas", b"v\xffl", b"-x"], create=True))
        self.assertEqual(os.listdir(path), ["kept"])

    def test_symlinks_are_not_followed(self):
        os.mkdir(os.path.join(self.outside, "vol"))
        os.symlink(self.outside, os.path.join(self.mirror, "nas"))
        self.mkdirs("real")
        os.symlink(os.path.join(self.mirror, "real"), os.path.join(self.mirror, "inside-link"))
        for parts in ([b"nas"], [b"nas", b"vol"], [b"nas", b"new"], [b"inside-link"]):
            for create in (False, True):
                with self.subTest(parts=parts, create=create), \
                        self.assertRaises(OSError) as e:
                    guard.walk(self.config, parts, create=create)
                self.assertIn(e.exception.errno, (errno.ELOOP, errno.ENOTDIR))
        self.assertEqual(os.listdir(self.outside), ["vol"])
        self.assertEqual(os.listdir(os.path.join(self.mirror, "real")), [])

    def test_a_file_is_not_a_directory(self):
        self.write(os.path.join(self.mirror, "file"))
        for create in (False, True):
            with self.subTest(create=create), self.assertRaises(NotADirectoryError):
                guard.walk(self.config, [b"file", b"x"], create=create)

    def test_a_missing_mirror_is_never_created(self):
        config = dict(self.config, mirror=os.path.join(self.tmp, "unmounted", "mirror"))
        for create in (False, True):
            with self.subTest(create=create), self.assertRaises(SystemExit) as e:
                guard.walk(config, [b"nas"], create=create)
            self.assertEqual(e.exception.code, 1)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "unmounted")))
        self.assertIn(f"the mirror directory {config['mirror']} does not exist",
                      self.stderr.value())


# ---- configuration ----------------------------------------------------------------------------


class Config(GuardTest):
    def load(self, text=None):
        path = os.path.join(self.tmp, "guard.conf")
        if text is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        with mock.patch.object(guard, "CONFIG", path):
            return guard.load_config()

    def assertBad(self, text, message):
        with self.assertRaises(SystemExit) as e:
            self.load(text)
        self.assertIsInstance(e.exception.code, str)  # printed, and the exit code is 1
        self.assertIn(message, e.exception.code)
        self.assertTrue(e.exception.code.startswith("backup-sidecar guard: "))

    def test_the_fixed_path(self):
        self.assertEqual(guard.CONFIG, "/etc/backup-sidecar/guard.conf")

    def test_defaults_without_a_file(self):
        self.assertEqual(self.load(), dict(guard.DEFAULTS,
                                           mirror=os.path.realpath(guard.DEFAULTS["mirror"])))
        self.assertEqual(guard.DEFAULTS, {
            "mirror": "/backup/mirror", "repository": "", "reader": "backup-sidecar-reader",
            "keep_within": "", "keep_daily": "7", "keep_weekly": "4", "keep_monthly": "6",
            "pre_command": "", "post_command": "",
            "copy": "", "copy_target": "", "copy_config": "",
            "copy_passphrase_file": "/etc/backup-sidecar/copy.passphrase", "copy_bwlimit": "",
            "copy_keep_within": "", "copy_keep_daily": "", "copy_keep_weekly": "",
            "copy_keep_monthly": "",
        })

    def test_a_file_overrides(self):
        config = self.load(
            "# the guard's settings\n"
            "\n"
            f"mirror = {self.mirror}/\n"
            "  repository=/backup/borg  \n"
            "   # indented comment\n"
            "keep_within = 2d\n"
            "keep_daily = 0\n"
            "keep_weekly=10\n"
            "pre_command = mount /backup && test -d /backup/mirror # a=b\n"
            "post_command = logger 'done = yes'\n"
            "reader = someone\n"
        )
        self.assertEqual(config, {
            **{key: value for key, value in guard.DEFAULTS.items() if key.startswith("copy")},
            "mirror": self.mirror,
            "repository": "/backup/borg",
            "reader": "someone",
            "keep_within": "2d",
            "keep_daily": "0",
            "keep_weekly": "10",
            "keep_monthly": "6",
            "pre_command": "mount /backup && test -d /backup/mirror # a=b",
            "post_command": "logger 'done = yes'",
        })

    def test_the_mirror_is_resolved(self):
        os.symlink(self.mirror, os.path.join(self.tmp, "link"))
        config = self.load(f"mirror = {self.tmp}/link/./\n")
        self.assertEqual(config["mirror"], self.mirror)
        self.assertEqual(self.load("mirror =\n")["mirror"], "")

    def test_the_last_of_a_repeated_key_wins(self):
        self.assertEqual(self.load("keep_daily = 1\nkeep_daily = 2\n")["keep_daily"], "2")

    def test_unknown_settings_and_bad_lines_stop_it(self):
        self.assertBad("keep_daily = 7\nkeep_last = 100\n", ":2: unknown setting 'keep_last'")
        self.assertBad("MIRROR = /x\n", ":1: unknown setting 'MIRROR'")
        self.assertBad("mirror /backup/mirror\n", ":1: unknown setting 'mirror /backup/mirror'")
        self.assertBad("= /x\n", ":1: unknown setting ''")
        self.assertBad("[guard]\n", ":1: unknown setting '[guard]'")
        self.assertBad("mirror: /x\n", "unknown setting 'mirror: /x'")

    def test_bad_values_stop_it(self):
        for key in ("keep_daily", "keep_weekly", "keep_monthly"):
            for value in ("", "-1", "7d", "1.5", "seven", "0x7"):
                with self.subTest(key=key, value=value):
                    self.assertBad(f"{key} = {value}\n", f"{key} must be a number")
        for value in ("2", "d", "2D", "2h", "2M", "2y", "123456d", "-2d", "2d1", "2 d"):
            with self.subTest(keep_within=value):
                self.assertBad(f"keep_within = {value}\n", "keep_within must look like 2d")
        for value in ("2d", "12H", "1w", "6m", "1Y", "99999d"):
            with self.subTest(keep_within=value):
                self.assertEqual(self.load(f"keep_within = {value}\n")["keep_within"], value)
        for key in ("mirror", "repository"):
            for value in ("backup", "./backup", "~/backup"):
                with self.subTest(key=key, value=value):
                    self.assertBad(f"{key} = {value}\n", f"{key} must be an absolute path")

    def test_copy_settings(self):
        config = self.load("copy = rclone\ncopy_target = offsite:backup/borg/\ncopy_bwlimit = 2M\n"
                           "copy_keep_daily = 30\n")
        self.assertEqual({key: value for key, value in config.items() if key.startswith("copy")}, {
            "copy": "rclone", "copy_target": "offsite:backup/borg",
            "copy_config": "/etc/backup-sidecar/rclone.conf",
            "copy_passphrase_file": "/etc/backup-sidecar/copy.passphrase", "copy_bwlimit": "2M",
            "copy_keep_within": "", "copy_keep_daily": "30", "copy_keep_weekly": "",
            "copy_keep_monthly": "",
        })
        config = self.load("copy = borg\ncopy_target = ssh://u@h:2222/./copy\n")
        self.assertEqual(config["copy_config"], "/etc/backup-sidecar/copy_ssh_config")
        config = self.load("copy = borg\ncopy_target = ssh://u@h/copy\ncopy_config = /root/ssh\n"
                           "copy_passphrase_file = /root/p\ncopy_keep_within = 1Y\n")
        self.assertEqual((config["copy_config"], config["copy_passphrase_file"],
                          config["copy_keep_within"]), ("/root/ssh", "/root/p", "1Y"))
        # A target without `copy` is not read.
        self.assertEqual(self.load("copy_target = anything at all\n")["copy"], "")

    def test_copy_targets(self):
        for kind, targets in (
            ("rclone", ("s3:bucket/borg", "local:/tmp/x/copy", "a_b.c-d:x", "9:p", "o:a..b/c..",
                        "o:borg/")),
            ("borg", ("ssh://u@h/x", "ssh://u@h:22/./repo", "ssh://backup@192.0.2.1/srv/borg",
                      "ssh://u@[::1]:22/r", "ssh://u@h/")),
        ):
            for target in targets:
                with self.subTest(kind=kind, target=target):
                    config = self.load(f"copy = {kind}\ncopy_target = {target}\n")
                    self.assertEqual(config["copy_target"], target.rstrip("/") if kind == "rclone"
                                     else target)
        for kind, targets in (
            ("rclone", ("offsite", "offsite:", "offsite:/", ":path", "-x:path", ".x:p", "o o:p",
                        "o:a b", "o:..", "o:../x", "o:a/../b", "o:a/..", "o:a\x01", "o:\u200bx")),
            ("borg", ("/backup/borg", "ssh://host/path", "ssh://u@h", "ssh://u@h:22",
                      "sftp://u@h/x", "ssh://u@h/a b", "u@h:/path", "ssh://@h/x", "ssh://u@/x",
                      "ssh://u@h/x\x7f")),
        ):
            for target in targets:
                with self.subTest(kind=kind, target=target):
                    self.assertBad(f"copy = {kind}\ncopy_target = {target}\n",
                                   "copy_target must look like")

    def test_bad_copy_settings_stop_it(self):
        for value in ("rsync", "Rclone", "yes", "1"):
            with self.subTest(copy=value):
                self.assertBad(f"copy = {value}\n", "copy must be rclone, borg or empty")
        for kind in ("rclone", "borg"):
            with self.subTest(kind=kind):
                self.assertBad(f"copy = {kind}\n", f"copy = {kind} needs copy_target")
                self.assertBad(f"copy = {kind}\ncopy_target =\n", "needs copy_target")
        for key in ("copy_config", "copy_passphrase_file"):
            for value in ("rclone.conf", "./x", "~/x"):
                with self.subTest(key=key, value=value):
                    self.assertBad(f"copy = rclone\ncopy_target = o:p\n{key} = {value}\n",
                                   f"{key} must be an absolute path")
        for key in ("copy_keep_daily", "copy_keep_weekly", "copy_keep_monthly"):
            for value in ("x", "-1", "7d", "1.5"):
                with self.subTest(key=key, value=value):
                    self.assertBad(f"{key} = {value}\n", f"{key} must be a number")
            for value in ("", "0", "30"):
                with self.subTest(key=key, value=value):
                    self.assertEqual(self.load(f"{key} = {value}\n")[key], value)
        self.assertBad("copy_keep_within = 2D\n", "copy_keep_within must look like 2d")

    def test_copy_bwlimit(self):
        for value, rate in (("", 0), ("0", 0), ("1000", 1000), ("2K", 2048), ("2M", 2 << 20),
                            ("1G", 1 << 30)):
            with self.subTest(value=value):
                config = self.load(f"copy_bwlimit = {value}\n")
                self.assertEqual((config["copy_bwlimit"], guard.bwlimit_bytes(config)),
                                 (value, rate))
        for value in ("1.5M", "2m", "2k", "2MB", "2 M", "-1", "M", "2T", "1KiB", "0x10"):
            with self.subTest(value=value):
                self.assertBad(f"copy_bwlimit = {value}\n", "copy_bwlimit must look like 500K")

    def test_only_a_missing_file_means_the_defaults(self):
        path = os.path.join(self.tmp, "a-directory")
        os.mkdir(path)
        with mock.patch.object(guard, "CONFIG", path), self.assertRaises(IsADirectoryError):
            guard.load_config()


# ---- the verbs on the mirror ------------------------------------------------------------------


class Stamps(GuardTest):
    def stamp(self, *parts):
        return os.path.join(self.mirror, *parts, guard.STAMP)

    def test_stamp_clear_makes_the_directory_and_removes_the_stamp(self):
        code, out, err = self.serve(f"{PROGRAM} stamp-clear {h(self.mirror + '/nas/vol')}")
        self.assertEqual((code, out, err), (0, "", ""))
        self.assertEqual(os.listdir(os.path.join(self.mirror, "nas", "vol")), [])
        self.write(self.stamp("nas", "vol"))
        self.write(os.path.join(self.mirror, "nas", "vol", "data"))
        self.assertEqual(self.serve(f"{PROGRAM} stamp-clear {h(self.mirror + '/nas/vol')}")[0], 0)
        self.assertEqual(os.listdir(os.path.join(self.mirror, "nas", "vol")), ["data"])

    def test_stamp_clear_does_not_leave_the_mirror(self):
        outside_stamp = self.write(os.path.join(self.outside, guard.STAMP))
        os.symlink(self.outside, os.path.join(self.mirror, "nas"))
        code, out, err = self.serve(f"{PROGRAM} stamp-clear {h(self.mirror + '/nas')}")
        self.assertEqual(code, 1)
        self.assertRegex(err, "stamp-clear: (Not a directory|Too many levels of symbolic links)")
        code, out, err = self.serve(f"{PROGRAM} stamp-clear {h(self.mirror + '/nas/sub')}")
        self.assertEqual(code, 1)
        self.assertRefused(f"{PROGRAM} stamp-clear {h(self.outside)}",
                           "is not inside the mirror directory")
        self.assertRefused(f"{PROGRAM} stamp-clear {h(self.mirror + '/../outside')}",
                           "without '.', '..' or empty components")
        self.assertRefused(f"{PROGRAM} stamp-clear {h(self.mirror + '/nas/../../outside')}",
                           "without '.', '..' or empty components")
        self.assertTrue(os.path.exists(outside_stamp))
        self.assertEqual(os.listdir(self.outside), [guard.STAMP])

    def test_stamp_write(self):
        self.mkdirs("nas")
        with mock.patch.object(guard.time, "gmtime", return_value=NOW):
            self.assertEqual(self.serve(f"{PROGRAM} stamp-write {h(self.mirror + '/nas')}"),
                             (0, "", ""))
        with open(self.stamp("nas")) as f:
            self.assertEqual(f.read(), "2026-11-30T03:00:00Z\n")
        # Written again over an older one.
        self.write(self.stamp("nas"), b"old")
        self.assertEqual(self.serve(f"{PROGRAM} stamp-write {h(self.mirror + '/nas')}")[0], 0)
        with open(self.stamp("nas")) as f:
            self.assertRegex(f.read(), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$")

    def test_stamp_write_needs_the_directory(self):
        code, out, err = self.serve(f"{PROGRAM} stamp-write {h(self.mirror + '/nas')}")
        self.assertEqual(code, 1)
        self.assertIn("stamp-write: No such file or directory", err)
        self.assertEqual(os.listdir(self.mirror), [])

    def test_stamp_write_replaces_a_planted_link_and_writes_nothing_outside(self):
        self.mkdirs("nas")
        target = self.write(os.path.join(self.outside, "victim"), b"keep")
        os.symlink(target, self.stamp("nas"))
        self.assertEqual(self.serve(f"{PROGRAM} stamp-write {h(self.mirror + '/nas')}")[0], 0)
        self.assertTrue(stat.S_ISREG(os.lstat(self.stamp("nas")).st_mode))
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"keep")

    def test_stamp_write_refuses_outside(self):
        self.assertRefused(f"{PROGRAM} stamp-write {h(self.outside)}",
                           "is not inside the mirror directory")
        self.assertEqual(os.listdir(self.outside), [])


class Claim(GuardTest):
    def claim(self, host, make, path):
        return self.serve(f"{PROGRAM} claim {host} {make} {h(path)}")

    def marker(self, *parts):
        return os.path.join(self.mirror, *parts, guard.HOST_MARKER)

    def test_claimed_then_owned(self):
        self.assertEqual(self.claim("nas", 1, self.mirror + "/nas"), (0, "claimed\n", ""))
        with open(self.marker("nas")) as f:
            self.assertEqual(f.read(), "nas\n")
        self.assertEqual(self.claim("nas", 0, self.mirror + "/nas"), (0, "", ""))

    def test_another_hosts(self):
        self.mkdirs("nas")
        self.write(self.marker("nas"), b"other-host\n")
        self.assertEqual(self.claim("nas", 1, self.mirror + "/nas"), (5, "other-host\n", ""))
        with open(self.marker("nas")) as f:
            self.assertEqual(f.read(), "other-host\n")

    def test_missing_and_not_to_be_made(self):
        self.assertEqual(self.claim("nas", 0, self.mirror + "/nas"), (6, "", ""))
        self.assertEqual(os.listdir(self.mirror), [])

    def test_an_existing_directory_without_a_marker_is_claimed_with_make_0(self):
        self.mkdirs("nas")
        self.assertEqual(self.claim("nas", 0, self.mirror + "/nas"), (0, "claimed\n", ""))

    def test_bad_arguments(self):
        for host, make, path, message in (
            ("-nas", "1", self.mirror + "/nas", "an archive prefix holds only"),
            ("nas:1", "1", self.mirror + "/nas", "an archive prefix holds only"),
            ("nas", "2", self.mirror + "/nas", "claim's MAKE is 0 or 1"),
            ("nas", "yes", self.mirror + "/nas", "claim's MAKE is 0 or 1"),
            ("nas", "01", self.mirror + "/nas", "claim's MAKE is 0 or 1"),
            ("nas", "1", self.outside, "is not inside the mirror directory"),
            ("nas", "1", self.mirror + "/../outside", "without '.', '..' or empty components"),
        ):
            with self.subTest(host=host, make=make, path=path):
                self.assertRefused(f"{PROGRAM} claim {host} {make} {h(path)}", message)
        self.assertEqual(os.listdir(self.mirror), [])
        self.assertEqual(os.listdir(self.outside), [])

    def test_a_planted_link_is_not_followed(self):
        self.mkdirs("nas")
        target = self.write(os.path.join(self.outside, "marker"), b"nas\n")
        os.symlink(target, self.marker("nas"))
        code, out, err = self.claim("nas", 1, self.mirror + "/nas")
        self.assertEqual(code, 1)
        self.assertIn("refused: .backup-sidecar-host is not a regular file", err)
        os.unlink(self.marker("nas"))
        os.symlink(self.outside, os.path.join(self.mirror, "link"))
        self.assertEqual(self.claim("nas", 1, self.mirror + "/link")[0], 1)
        self.assertEqual(sorted(os.listdir(self.outside)), ["marker"])


class ClaimSpecialMarker(GuardTest):
    def test_a_fifo_marker_is_refused_without_blocking(self):
        self.mkdirs("nas")
        os.mkfifo(os.path.join(self.mirror, "nas", guard.HOST_MARKER))

        def hung(*_):
            raise TimeoutError("the guard blocked opening a fifo")
        previous = signal.signal(signal.SIGALRM, hung)
        signal.alarm(5)
        try:
            code, out, err = self.serve(f"{PROGRAM} claim nas 1 {h(self.mirror + '/nas')}")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        self.assertEqual((code, out), (1, ""))
        self.assertIn("is not a regular file", err)


class IsDirAndStat(GuardTest):
    def test_is_dir(self):
        self.mkdirs("nas", "vol")
        self.write(os.path.join(self.mirror, "file"))
        os.symlink(os.path.join(self.mirror, "nas"), os.path.join(self.mirror, "link"))
        for path, code in ((self.mirror, 0), (self.mirror + "/nas", 0),
                           (self.mirror + "/nas/vol/", 0), (self.mirror + "/missing", 1),
                           (self.mirror + "/file", 1), (self.mirror + "/link", 1),
                           (self.mirror + "/link/vol", 1)):
            with self.subTest(path=path):
                self.assertEqual(self.serve(f"{PROGRAM} is-dir {h(path)}"), (code, "", ""))
        self.assertRefused(f"{PROGRAM} is-dir {h(self.outside)}", "not inside the mirror")
        self.assertRefused(f"{PROGRAM} is-dir {h(self.tmp)}", "not inside the mirror")

    def test_stat(self):
        path = self.write(os.path.join(self.mkdirs("nas"), "file"), b"hello")
        os.utime(path, ns=(0, 1_000_000_000_123_456_789))
        try:
            with mock.patch.dict(os.environ, {"TZ": "UTC"}):
                time.tzset()
                self.assertEqual(self.serve(f"{PROGRAM} stat {h(path)}"),
                                 (0, "5 2001-09-09 01:46:40.123456789 +0000\n", ""))
        finally:
            time.tzset()

    def test_stat_does_not_follow_links(self):
        big = self.write(os.path.join(self.outside, "big"), b"x" * 1000)
        os.symlink(big, os.path.join(self.mirror, "link"))
        code, out, err = self.serve(f"{PROGRAM} stat {h(self.mirror + '/link')}")
        self.assertEqual(code, 0)
        self.assertEqual(out.split()[0], str(len(big)))
        os.symlink(self.outside, os.path.join(self.mirror, "dirlink"))
        self.assertEqual(self.serve(f"{PROGRAM} stat {h(self.mirror + '/dirlink/big')}")[:2],
                         (1, ""))

    def test_stat_missing_and_refused(self):
        self.assertEqual(self.serve(f"{PROGRAM} stat {h(self.mirror + '/missing')}"),
                         (1, "", ""))
        self.assertEqual(self.serve(f"{PROGRAM} stat {h(self.mirror + '/a/b')}"), (1, "", ""))
        self.assertRefused(f"{PROGRAM} stat {h(self.mirror)}", "refused: stat needs a file")
        self.assertRefused(f"{PROGRAM} stat {h(self.outside + '/big')}", "not inside the mirror")


class Hello(GuardTest):
    runs_processes = True  # versions runs the programs

    def hello(self, config=None):
        code, out, err = self.serve(f"{PROGRAM} hello", config)
        self.assertEqual((code, err), (0, ""))
        return json.loads(out)

    def test_hello(self):
        os.mkdir(self.repo)
        self.write(os.path.join(self.repo, "config"),
                   b"[repository]\nversion = 1\nappend_only = 1\n")
        self.assertEqual(self.hello(), {
            "guard": "2", "mirror": self.mirror, "repository": self.repo,
            "writable": os.access(self.mirror, os.W_OK), "append_only": True, "copy": None,
        })
        self.write(os.path.join(self.repo, "config"), b"[repository]\nappend_only=0\n")
        self.assertIs(self.hello()["append_only"], False)

    def test_without_a_repository(self):
        info = self.hello(dict(self.config, repository=""))
        self.assertEqual((info["repository"], info["append_only"]), (None, None))
        self.assertIsNone(self.hello()["append_only"])  # configured, not made yet

    def test_an_rclone_copy_shows_its_remotes_type_only(self):
        conf = self.write(os.path.join(self.tmp, "rclone.conf"),
                          b"[offsite]\ntype = sftp\nhost = secret.example\nuser = alice\n"
                          b"pass = OBSCURED\n\n[other]\ntype = s3\n")
        config = dict(self.config, copy="rclone", copy_target="offsite:backup/borg",
                      copy_config=conf)
        info = self.hello(config)
        self.assertEqual(info["copy"], {"kind": "rclone", "target": "offsite:backup/borg (sftp)"})
        for secret in ("secret.example", "alice", "OBSCURED"):
            self.assertNotIn(secret, json.dumps(info))
        self.assertEqual(self.hello(dict(config, copy_target="other:x"))["copy"]["target"],
                         "other:x (s3)")
        garbage = self.write(os.path.join(self.tmp, "garbage"), b"\xff\xfe[offsite]\n")
        encrypted = self.write(os.path.join(self.tmp, "encrypted"), b"# Encrypted rclone "
                               b"configuration File\n\nRCLONE_ENCRYPT_V0:\nxyz\n")
        for settings in ({"copy_target": "gone:x"}, {"copy_config": self.tmp},
                         {"copy_config": os.path.join(self.tmp, "missing")},
                         {"copy_config": garbage}, {"copy_config": encrypted}):
            with self.subTest(settings=settings):
                target = self.hello(dict(config, **settings))["copy"]["target"]
                self.assertTrue(target.endswith(" (unknown)"), target)

    def test_a_borg_copy_hides_who_and_where(self):
        config = dict(self.config, copy="borg",
                      copy_target="ssh://copyuser@copy.example:2222/./borg-copy")
        code, out, err = self.serve(f"{PROGRAM} hello", config)
        self.assertEqual(json.loads(out)["copy"], {"kind": "borg", "target": "ssh://…/./borg-copy"})
        for secret in ("copyuser", "copy.example", "2222"):
            self.assertNotIn(secret, out)

    def test_versions(self):
        self.patch(guard, "RSYNC", sys.executable)
        self.patch(guard, "BORG", os.path.join(self.tmp, "no-borg-here"))
        code, out, err = self.serve(f"{PROGRAM} versions")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out), {"rsync": f"Python {sys.version.split()[0]}",
                                           "borg": None})


# ---- the verbs that run borg ------------------------------------------------------------------


class BorgTest(GuardTest):
    """A repository directory, and a client environment full of BORG_ variables."""

    def setUp(self):
        super().setUp()
        os.mkdir(self.repo)
        # What a client could have in the environment sshd gives the guard: none of it reaches
        # borg (the guard's sshd_config has AcceptEnv no, but the guard does not rely on it).
        environ = mock.patch.dict(os.environ, {"BORG_PASSPHRASE": "from-env",
                                               "BORG_PASSCOMMAND": "cat /etc/shadow",
                                               "BORG_RSH": "sh -c id", "BORG_REPO": "/",
                                               "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"})
        environ.start()
        self.addCleanup(environ.stop)

    def assertBorgEnv(self, call):
        self.assertEqual(call.passphrase, b"s3cret")
        for key, value in guard.BORG_ENV.items():
            self.assertEqual(call.env[key], value)
        borg = {k: v for k, v in call.env.items() if k.startswith("BORG_")}
        self.assertEqual(set(borg), set(guard.BORG_ENV) | {"BORG_PASSPHRASE_FD"})
        self.assertNotIn("s3cret", " ".join(map(str, call.argv)))
        self.assertNotIn("s3cret", " ".join(call.env.values()))
        self.assertIs(call.kwargs["stdin"], subprocess.DEVNULL)


class Borg(BorgTest):
    def test_borg_env(self):
        self.assertEqual(guard.BORG_ENV, {
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
            "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
            "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
        })

    def test_list_info_check(self):
        for command, argv in (
            ("list", ["borg", "list", "--umask", "0027", "--json", self.repo]),
            ("info", ["borg", "info", "--umask", "0027", "--json", "--glob-archives", "*",
                      self.repo]),
            ("check 300", ["borg", "check", "--umask", "0027", "--lock-wait", "300", self.repo]),
            ("list-archive nas-2026-11-30T03:00:00",
             ["borg", "list", "--umask", "0027", "--json-lines",
              f"{self.repo}::nas-2026-11-30T03:00:00"]),
        ):
            with self.subTest(command=command):
                fake = self.fake_borg(codes=[3])
                self.assertEqual(self.serve(f"{PROGRAM} {command}"), (3, "", ""))
                self.assertEqual(fake.argvs, [argv])
                self.assertBorgEnv(fake.calls[0])

    def test_client_words_never_become_options(self):
        fake = self.fake_borg()
        for command, message in (
            ("check --repair", "expected a number"),
            ("check 0", "expected a number"),
            ("check 86401", "expected a number"),
            ("list-archive --help", "an archive name holds only"),
            ("list-archive -a", "an archive name holds only"),
            ("list-archive nas::x/y", "an archive name holds only"),
            ("list-archive {now}", "an archive name holds only"),
            ("item --format 2f", "an archive name holds only"),
            (f"item nas {h('../x')}", "without '.', '..'"),
            (f"item nas {h('/etc')}", "without '.', '..'"),
            ("item nas --", "hex-encoded"),
            (f"sample -x {h('a')} {h(self.mirror + '/a')}", "an archive name holds only"),
            (f"sample nas {h('a')} {h('/etc/shadow')}", "not inside the mirror"),
            (f"snapshot --progress 30 {h(self.mirror)}", "an archive prefix holds only"),
            (f"snapshot nas* 30 {h(self.mirror)}", "an archive prefix holds only"),
            (f"snapshot nas --lock-wait {h(self.mirror)}", "expected a number"),
            (f"snapshot nas 30 {h(self.outside)}", "not inside the mirror"),
        ):
            with self.subTest(command=command):
                self.assertRefused(f"{PROGRAM} {command}", message)
        self.assertEqual(fake.calls, [])

    def test_no_repository(self):
        fake = self.fake_borg()
        config = dict(self.config, repository="")
        self.write(os.path.join(self.mirror, guard.STAMP))
        for command in ("list", "info", "check 30", "list-archive a", f"item a {h('x')}",
                        "unlock-stale", f"snapshot nas 30 {h(self.mirror)}"):
            with self.subTest(command=command):
                self.assertRefused(f"{PROGRAM} {command}", "no repository configured", config)
        self.assertEqual(fake.calls, [])

    def test_item_passes_the_path_after_a_double_dash_and_only_the_first_line(self):
        fake = self.fake_borg(stdout=b'{"path": "-rf"}\n{"path": "-rf/a"}\n{"path": "-rf/b"}\n')
        code, out, err = self.serve(f"{PROGRAM} item nas-1 {h('-rf')}")
        self.assertEqual((code, out, err), (0, '{"path": "-rf"}\n', ""))
        self.assertEqual(fake.argvs, [["borg", "list", "--umask", "0027", "--json-lines",
                                       f"{self.repo}::nas-1", b"--", b"-rf"]])
        self.assertBorgEnv(fake.calls[0])
        self.assertEqual(fake.calls[0].child.signals, [signal.SIGTERM])

    def test_item_of_the_archive_root(self):
        fake = self.fake_borg(stdout=b"first\n")
        self.assertEqual(self.serve(f"{PROGRAM} item nas-1 2e"), (0, "first\n", ""))
        self.assertEqual(fake.argvs, [["borg", "list", "--umask", "0027", "--json-lines",
                                       f"{self.repo}::nas-1"]])

    def test_sample(self):
        self.write(os.path.join(self.mkdirs("nas"), "file"), b"mirror's")
        fake = self.fake_borg(stdout=b"archive's")
        code, out, err = self.serve(f"{PROGRAM} sample nas-1 {h('-v/file')} "
                                    f"{h(self.mirror + '/nas/file')}")
        self.assertEqual((code, err), (0, ""))
        # The archive's file first, then the mirror's, as sha256sum prints them.
        self.assertEqual(out, sha256sum(b"archive's") + sha256sum(b"mirror's"))
        self.assertEqual(fake.argvs, [["borg", "extract", "--umask", "0027", "--stdout",
                                       f"{self.repo}::nas-1", b"--", b"-v/file"]])
        self.assertBorgEnv(fake.calls[0])

    def test_sample_when_borg_fails(self):
        self.write(os.path.join(self.mirror, "file"), b"x")
        self.fake_borg(codes=[2], stdout=b"partial")
        self.assertEqual(self.serve(f"{PROGRAM} sample nas-1 {h('file')} "
                                    f"{h(self.mirror + '/file')}"), (2, "", ""))

    def test_sample_opens_only_a_regular_file_of_the_mirror(self):
        fake = self.fake_borg()
        os.mkfifo(os.path.join(self.mirror, "fifo"))
        self.mkdirs("dir")
        secret = self.write(os.path.join(self.outside, "secret"), b"secret")
        os.symlink(secret, os.path.join(self.mirror, "link"))
        os.symlink(self.outside, os.path.join(self.mirror, "dirlink"))

        def hung(*_):
            raise TimeoutError("the guard blocked opening a fifo")
        previous = signal.signal(signal.SIGALRM, hung)
        signal.alarm(5)
        try:
            for name, message in (("fifo", "the mirror's copy is not a regular file"),
                                  ("dir", "the mirror's copy is not a regular file"),
                                  ("link", "the mirror's copy is not a regular file"),
                                  ("dirlink/secret", "cannot open the mirror's copy"),
                                  ("missing", "cannot open the mirror's copy: No such file")):
                with self.subTest(name=name):
                    code, out, err = self.serve(f"{PROGRAM} sample nas {h('f')} "
                                                f"{h(self.mirror + '/' + name)}")
                    self.assertEqual((code, out), (1, ""))
                    self.assertIn(message, err)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        self.assertEqual(fake.calls, [])
        self.assertRefused(f"{PROGRAM} sample nas 2e {h(self.mirror + '/dir')}",
                           "sample needs two files")
        self.assertRefused(f"{PROGRAM} sample nas {h('f')} {h(self.mirror)}",
                           "sample needs two files")

    def test_borg_not_installed(self):
        # What Popen raises when the program is not on PATH.
        self.patch(guard.subprocess, "Popen",
                   side_effect=FileNotFoundError(errno.ENOENT, "No such file or directory", "borg"))
        self.patch(guard, "read_passphrase", return_value=b"s3cret")
        code, out, err = self.serve(f"{PROGRAM} list")
        self.assertEqual((code, err), (127, "backup-sidecar guard: borg: command not found\n"))

    def test_start_borg_closes_the_passphrase_pipe_and_enters_the_directory(self):
        fake = self.fake_borg()
        fd = os.open(self.mirror, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, fd)
        guard.start_borg(["create", "x"], b"s3cret", cwd_fd=fd)
        passed = int(fake.calls[0].env["BORG_PASSPHRASE_FD"])
        with self.assertRaises(OSError):
            os.fstat(passed)
        self.assertEqual(fake.argvs, [["borg", "create", "--umask", "0027", "x"]])
        preexec = fake.calls[0].kwargs["preexec_fn"]
        cwd = os.getcwd()
        try:
            preexec()
            self.assertEqual(os.path.realpath(os.getcwd()), self.mirror)
        finally:
            os.chdir(cwd)
        guard.start_borg(["list"], b"")
        self.assertIsNone(fake.calls[1].kwargs["preexec_fn"])
        self.assertEqual(fake.calls[1].passphrase, b"")

    def test_read_passphrase(self):
        for given, read in ((b"pass word\n", b"pass word"), (b"p\r\n", b"p"), (b"", b""),
                            (b"a\nb\n\n", b"a\nb"), (b" p ", b" p ")):
            with self.subTest(given=given):
                self.assertEqual(self.stdin(given), read)

    def test_a_passphrase_too_long_for_a_pipe_is_refused(self):
        # Written whole into borg's pipe before borg reads it, a passphrase over 64 KiB would
        # block the guard for good.
        self.assertEqual(len(self.stdin(b"x" * guard.MAX_PASSPHRASE)), guard.MAX_PASSPHRASE)
        for size in (guard.MAX_PASSPHRASE + 1, 70_000, 200_000):
            with self.subTest(size=size):
                with self.assertRaisesRegex(guard.Refused, "at most 4096 bytes"):
                    self.stdin(b"x" * size)

    def stdin(self, data):
        r, w = os.pipe()
        writer = threading.Thread(target=self._feed, args=(w, data))
        writer.start()
        saved = os.dup(0)
        os.dup2(r, 0)
        os.close(r)
        try:
            return guard.read_passphrase()
        finally:
            os.dup2(saved, 0)
            os.close(saved)
            writer.join()

    @staticmethod
    def _feed(fd, data):
        try:
            os.write(fd, data)
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)


class OwnArchives(unittest.TestCase):
    def test_a_prefix_never_takes_a_longer_prefixs_archives(self):
        glob = guard.own_archives("nas")
        self.assertTrue(fnmatch.fnmatchcase("nas-2026-11-30T03:00:00", glob))
        for other in ("nas-2-2026-11-30T03:00:00", "nas-2026-2026-11-30T03:00:00",
                      "nasx-2026-11-30T03:00:00", "nas-"):
            self.assertFalse(fnmatch.fnmatchcase(other, glob), other)


class Snapshot(BorgTest):
    def setUp(self):
        super().setUp()
        self.where = h(self.mirror + "/nas")
        self.stamp = os.path.join(self.mkdirs("nas"), guard.STAMP)
        self.patch(guard.time, "gmtime", return_value=NOW)

    def create_argv(self, name="nas-2026-11-30T03:00:00"):
        return ["borg", "create", "--umask", "0027", "--lock-wait", "1", "--json", "--progress",
                "--log-json", f"{self.repo}::{name}", "."]

    def prune_argv(self, *rules, glob="nas-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*"):
        return ["borg", "prune", "--umask", "0027", "--lock-wait", "1", "--log-json",
                "--glob-archives", glob, *rules, self.repo]

    def test_refused_without_the_stamp(self):
        fake = self.fake_borg()
        os.mkdir(os.path.join(self.mirror, "dir-stamp"))
        os.mkdir(os.path.join(self.mirror, "dir-stamp", guard.STAMP))
        os.mkdir(os.path.join(self.mirror, "link-stamp"))
        os.symlink(self.write(os.path.join(self.outside, "s")),
                   os.path.join(self.mirror, "link-stamp", guard.STAMP))
        for where in ("nas", "dir-stamp", "link-stamp"):
            with self.subTest(where=where):
                code, out, err = self.serve(f"{PROGRAM} snapshot nas 30 "
                                            f"{h(self.mirror + '/' + where)}")
                self.assertEqual((code, out), (3, ""))
                self.assertIn("refusing to snapshot: the last run of the mirror did not "
                              "complete", err)
        self.assertEqual(fake.calls, [])

    def test_create_then_prune_with_this_sides_retention(self):
        self.write(self.stamp)
        fake = self.fake_borg()
        self.assertEqual(self.serve(f"{PROGRAM} snapshot nas 30 {self.where}"), (0, "", ""))
        self.assertEqual(fake.argvs, [
            self.create_argv(),
            self.prune_argv("--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"),
        ])
        for call in fake.calls:
            self.assertBorgEnv(call)
        create, prune = fake.calls
        self.assertIsNotNone(create.kwargs["preexec_fn"])
        self.assertIsNone(prune.kwargs["preexec_fn"])
        self.assertIs(prune.kwargs["stdout"], subprocess.DEVNULL)

    def test_retention_from_the_configuration(self):
        self.write(self.stamp)
        for settings, rules in (
            ({"keep_within": "2d"}, ["--keep-within", "2d", "--keep-daily", "7", "--keep-weekly",
                                     "4", "--keep-monthly", "6"]),
            ({"keep_daily": "0", "keep_monthly": "12"}, ["--keep-weekly", "4", "--keep-monthly",
                                                         "12"]),
            ({"keep_daily": "0", "keep_weekly": "0", "keep_monthly": "0", "keep_within": "1Y"},
             ["--keep-within", "1Y"]),
        ):
            with self.subTest(settings=settings):
                fake = self.fake_borg()
                config = dict(self.config, **settings)
                self.assertEqual(self.serve(f"{PROGRAM} snapshot nas-2 30 {self.where}", config)[0],
                                 0)
                prune = self.prune_argv(*rules, glob=guard.own_archives("nas-2"))
                self.assertEqual(fake.argvs,
                                 [self.create_argv("nas-2-2026-11-30T03:00:00"), prune])

    def test_no_retention_no_prune(self):
        self.write(self.stamp)
        fake = self.fake_borg()
        config = dict(self.config, keep_daily="0", keep_weekly="0", keep_monthly="0")
        self.assertEqual(self.serve(f"{PROGRAM} snapshot nas 30 {self.where}", config)[0], 0)
        self.assertEqual(fake.argvs, [self.create_argv()])

    def test_a_failed_create_is_not_pruned_after(self):
        self.write(self.stamp)
        fake = self.fake_borg(codes=[2])
        self.assertEqual(self.serve(f"{PROGRAM} snapshot nas 30 {self.where}")[0], 2)
        self.assertEqual(fake.argvs, [self.create_argv()])

    def test_a_warning_still_prunes_and_is_the_exit_code(self):
        self.write(self.stamp)
        fake = self.fake_borg(codes=[1, 0])
        self.assertEqual(self.serve(f"{PROGRAM} snapshot nas 30 {self.where}")[0], 1)
        self.assertEqual(len(fake.calls), 2)
        fake = self.fake_borg(codes=[0, 2])
        self.assertEqual(self.serve(f"{PROGRAM} snapshot nas 30 {self.where}")[0], 2)

    def test_a_lock_held_elsewhere_is_waited_for(self):
        """borg tries for a second and is started again while `wait` seconds are left; the lock
        timeouts of the tries that are followed by another are not passed on."""
        self.write(self.stamp)
        clock = [0.0]
        self.patch(guard.time, "monotonic", side_effect=lambda: clock[0])

        def tick():
            clock[0] += 1
        timeout = b'{"type": "log_message", "msgid": "LockTimeout"}\n'
        fake = self.fake_borg(codes=[2], stderr=b"warming up\n" + timeout, on_start=tick)
        code, out, err = self.serve(f"{PROGRAM} snapshot nas 3 {self.where}")
        self.assertEqual(code, 2)
        self.assertEqual(fake.argvs, [self.create_argv()] * 3)
        self.assertEqual(err, "warming up\n" * 3 + timeout.decode())

    def test_the_archive_name_is_the_remotes_clock(self):
        self.write(self.stamp)
        fake = self.fake_borg()
        self.assertEqual(self.serve(f"{PROGRAM} snapshot a.b_c 30 {self.where}")[0], 0)
        self.assertEqual(fake.argvs[0][-2], f"{self.repo}::a.b_c-2026-11-30T03:00:00")


class UnlockStale(BorgTest):
    def test_no_lock(self):
        fake = self.fake_borg()
        self.assertEqual(self.serve(f"{PROGRAM} unlock-stale"), (0, "", ""))
        self.assertEqual(fake.calls, [])

    def test_a_lock_held_by_a_running_borg(self):
        self.write(os.path.join(self.repo, "lock.exclusive"))
        fake = self.fake_borg()
        self.patch(guard, "lock_is_held", return_value=True)
        self.assertEqual(self.serve(f"{PROGRAM} unlock-stale"), (0, "held\n", ""))
        self.assertEqual(fake.calls, [])

    def test_a_stale_lock_is_broken(self):
        self.write(os.path.join(self.repo, "lock.exclusive"))
        self.patch(guard, "lock_is_held", return_value=False)
        fake = self.fake_borg()
        self.assertEqual(self.serve(f"{PROGRAM} unlock-stale"), (0, "broken\n", ""))
        self.assertEqual(fake.argvs, [["borg", "break-lock", "--umask", "0027", self.repo]])
        self.assertBorgEnv(fake.calls[0])
        fake = self.fake_borg(codes=[2])
        self.assertEqual(self.serve(f"{PROGRAM} unlock-stale"), (2, "", ""))


class LockIsHeld(unittest.TestCase):
    """Real processes, with only this test's children in /proc's listing."""

    def held(self, argv, executable="/bin/sleep"):
        child = subprocess.Popen(argv, executable=executable)
        try:
            # Popen returns once the exec has begun: the new command line may not be set yet.
            expected = b"\0".join(os.fsencode(a) for a in argv) + b"\0"
            deadline = time.monotonic() + 5
            while True:
                with open(f"/proc/{child.pid}/cmdline", "rb") as f:
                    if f.read() == expected:
                        break
                if time.monotonic() > deadline:
                    self.fail(f"{argv} did not start")
                time.sleep(0.001)
            with mock.patch.object(guard.os, "listdir",
                                   return_value=["self", str(os.getpid()), str(child.pid)]):
                return guard.lock_is_held()
        finally:
            child.kill()
            child.wait()

    def test_a_borg(self):
        self.assertTrue(self.held(["borg", "5"]))
        self.assertTrue(self.held(["/usr/bin/borg", "5"]))

    def test_a_borg_run_by_its_interpreter(self):
        with tempfile.TemporaryDirectory() as tmp:
            script = os.path.join(tmp, "borg")
            with open(script, "w") as f:
                f.write("sleep 5; true\n")
            self.assertTrue(self.held(["/bin/sh", script], executable="/bin/sh"))

    def test_not_a_borg(self):
        self.assertFalse(self.held(["borg", "-c", "sleep 5; true", "break-lock"],
                                   executable="/bin/sh"))
        self.assertFalse(self.held(["sleep", "5"]))
        self.assertFalse(self.held(["borgmatic", "5"]))
        with mock.patch.object(guard.os, "listdir", return_value=["self", str(os.getpid())]):
            self.assertFalse(guard.lock_is_held())


# ---- pre and post -----------------------------------------------------------------------------


class Hooks(GuardTest):
    runs_processes = True  # a real /bin/sh

    def test_only_the_configurations_command(self):
        config = dict(self.config, pre_command="mount /backup", post_command="umount /backup")
        for verb, command in (("pre", "mount /backup"), ("post", "umount /backup")):
            with self.subTest(verb=verb), \
                    mock.patch.object(guard.subprocess, "run",
                                      return_value=mock.Mock(returncode=4)) as run:
                self.assertEqual(self.serve(f"{PROGRAM} {verb}", config), (4, "", ""))
                run.assert_called_once_with(["/bin/sh", "-c", command],
                                            stdin=subprocess.DEVNULL, stdout=sys.stderr)
            with self.subTest(verb=verb, extra=True), \
                    mock.patch.object(guard.subprocess, "run") as run:
                self.assertRefused(f"{PROGRAM} {verb} id", f"{verb} takes 0 argument(s)", config)
                self.assertRefused(f"{PROGRAM} {verb} ;id", f"{verb} takes 0 argument(s)", config)
                run.assert_not_called()

    def test_none_configured(self):
        with mock.patch.object(guard.subprocess, "run") as run:
            self.assertEqual(self.serve(f"{PROGRAM} pre"), (0, "", ""))
            self.assertEqual(self.serve(f"{PROGRAM} post"), (0, "", ""))
            run.assert_not_called()

    def test_a_real_shell_with_its_output_on_stderr(self):
        log = os.path.join(self.tmp, "stderr")
        with open(log, "w") as err:
            config = dict(self.config, pre_command='echo "ran by $0 with $# arguments"; exit 4')
            with mock.patch.object(sys, "stderr", err):
                self.assertEqual(guard.hook(config, "pre_command"), 4)
        with open(log) as f:
            self.assertEqual(f.read(), "ran by /bin/sh with 0 arguments\n")
        self.assertEqual(self.stdout.value(), "")


# ---- the second copy --------------------------------------------------------------------------


def tree(root):
    """Every file below root: {relative path: content}."""
    files = {}
    for top, _, names in os.walk(root):
        for name in names:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


class CopyTest(GuardTest):
    """A repository with segments, index files and a lock, an rclone config with a local-type
    remote, and the configuration of an rclone copy into this test's directory."""

    REPOSITORY = {"config": b"[repository]\nversion = 1\n", "README": b"borg", "hints.2": b"h2",
                  "index.2": b"i2", "integrity.2": b"g2", "nonce": b"n",
                  "data/0/1": b"segment 1" * 1000, "data/0/2": b"segment 2",
                  "lock.roster": b"{}", "lock.exclusive/host.1-2": b""}

    def setUp(self):
        super().setUp()
        for name, data in self.REPOSITORY.items():
            path = os.path.join(self.repo, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.write(path, data)
        self.staging = os.path.join(self.tmp, ".borg.copy")
        self.remote = os.path.join(self.tmp, "remote")
        self.rclone_conf = self.write(os.path.join(self.tmp, "rclone.conf"),
                                      b"[local]\ntype = local\n")
        self.config.update(copy="rclone", copy_target=f"local:{self.remote}/copy",
                           copy_config=self.rclone_conf)

    def staged(self):
        """The repository as the staging tree holds it."""
        return {k: v for k, v in tree(self.repo).items() if not k.startswith("lock.")}


class CopyArguments(CopyTest):
    def test_no_copy_configured(self):
        config = dict(self.config, copy="")
        for command in (f"copy nas 30 {h(self.mirror)}", "copy-check 30"):
            with self.subTest(command=command):
                self.assertRefused(f"{PROGRAM} {command}", "refused: this remote has no copy "
                                   "configured (copy in its guard.conf)", config)

    def test_client_words_never_become_options(self):
        for command, message in (
            (f"copy -nas 30 {h(self.mirror)}", "an archive prefix holds only"),
            (f"copy nas* 30 {h(self.mirror)}", "an archive prefix holds only"),
            (f"copy --dry-run 30 {h(self.mirror)}", "an archive prefix holds only"),
            (f"copy nas 0 {h(self.mirror)}", "expected a number from 1 to 86400"),
            (f"copy nas 86401 {h(self.mirror)}", "expected a number"),
            (f"copy nas --bwlimit {h(self.mirror)}", "expected a number"),
            (f"copy nas 30 {h(self.outside)}", "not inside the mirror"),
            (f"copy nas 30 {h(self.mirror + '/../outside')}", "without '.', '..'"),
            ("copy nas 30 --delete", "hex-encoded"),
            ("copy-check 0", "expected a number"),
            ("copy-check --one-way", "expected a number"),
        ):
            with self.subTest(command=command):
                self.assertRefused(f"{PROGRAM} {command}", message)
        self.assertEqual(sorted(os.listdir(self.tmp)),
                         ["borg", "mirror", "outside", "rclone.conf"])

    def test_an_rclone_copy_needs_the_repository(self):
        config = dict(self.config, repository="")
        for command in (f"copy nas 30 {h(self.mirror)}", "copy-check 30"):
            with self.subTest(command=command):
                self.assertRefused(f"{PROGRAM} {command}", "no repository configured", config)


class CopyStage(CopyTest):
    def test_the_staging_tree(self):
        # What a killed stage and an older copy left.
        os.makedirs(os.path.join(self.staging + ".new", "junk"))
        os.makedirs(os.path.join(self.staging + ".old", "junk"))
        os.makedirs(os.path.join(self.staging, "data", "0"))
        self.write(os.path.join(self.staging, "index.1"), b"older")
        self.write(os.path.join(self.staging, "data", "0", "1"), b"older")
        os.utime(os.path.join(self.repo, "index.2"), ns=(0, 1_000_000_000_123_456_789))
        self.assertEqual(guard.copy_stage(self.config), 0)
        self.assertEqual(tree(self.staging), self.staged())
        self.assertEqual(sorted(n for n in os.listdir(self.tmp) if n.startswith(".")),
                         [".borg.copy"])
        self.assertEqual(stat.S_IMODE(os.stat(self.staging).st_mode), 0o700)
        for name in self.staged():
            repo, staged = os.path.join(self.repo, name), os.path.join(self.staging, name)
            with self.subTest(name=name):
                # Segments are linked (never changed once written); the rest is copied.
                self.assertEqual(os.path.samefile(repo, staged), name.startswith("data/"))
                self.assertEqual(os.stat(repo).st_mtime_ns, os.stat(staged).st_mtime_ns)
        # Run again: replaced, with what changed since.
        os.unlink(os.path.join(self.repo, "index.2"))
        self.write(os.path.join(self.repo, "index.3"), b"i3")
        self.write(os.path.join(self.repo, "data", "0", "3"), b"segment 3")
        self.assertEqual(guard.copy_stage(self.config), 0)
        self.assertEqual(tree(self.staging), self.staged())

    def test_the_stage_runs_under_the_repositorys_lock_as_the_owner(self):
        """borg with-lock runs the guard itself, without the key's command in its environment
        (with it, the guard would serve that command again)."""
        environ = {"SSH_ORIGINAL_COMMAND": f"{PROGRAM} copy nas 30 {h(self.mirror)}"}
        with mock.patch.dict(os.environ, environ):
            fake = self.fake_borg(codes=[5], stderr=b"with-lock: boom\n")
            code, out, err = self.serve(environ["SSH_ORIGINAL_COMMAND"])
        self.assertEqual((code, out), (5, ""))
        self.assertEqual(fake.argvs, [["borg", "with-lock", "--umask", "0027", "--lock-wait", "1",
                                       self.repo, sys.executable,
                                       os.path.realpath(guard.__file__), "--copy-stage"]])
        call = fake.calls[0]
        self.assertNotIn("SSH_ORIGINAL_COMMAND", call.env)
        self.assertEqual(call.passphrase, b"")
        self.assertIs(call.kwargs["stdout"], subprocess.DEVNULL)
        self.assertEqual(err, "with-lock: boom\nbackup-sidecar guard: copy: could not stage the "
                         f"repository {self.repo} (exit 5)\n")

    def test_one_copy_at_a_time(self):
        """Another host's copy holds the staging tree: waited for, then given up."""
        held = os.open(self.staging + ".lock", os.O_WRONLY | os.O_CREAT)
        self.addCleanup(os.close, held)
        fcntl.flock(held, fcntl.LOCK_EX)
        fake = self.fake_borg()
        clock = [0.0]
        self.patch(guard.time, "monotonic", side_effect=lambda: clock[0])
        self.patch(guard.time, "sleep", side_effect=lambda s: clock.__setitem__(0, clock[0] + s))
        for command in (f"copy nas 3 {h(self.mirror)}", "copy-check 3"):
            with self.subTest(command=command):
                code, out, err = self.serve(f"{PROGRAM} {command}")
                self.assertEqual((code, out), (2, ""))
                self.assertEqual(err, "backup-sidecar guard: copy: another copy of the repository "
                                 "is running (waited 3 s)\n")
        self.assertEqual(fake.calls, [])
        self.assertGreaterEqual(clock[0], 3)


class CopyOutput(GuardTest):
    def test_the_secrets_of_an_rclone_remote(self):
        conf = self.write(os.path.join(self.tmp, "rclone.conf"),
                          b"[offsite]\ntype = sftp\nhost = backup.example.org\nuser = alice\n"
                          b"pass = OBSCURED\nkey_file = /root/.ssh/offsite\nport = 22\n"
                          b"url = \nshell_type = unix\n\n[other]\nhost = other.example\n")
        config = dict(self.config, copy="rclone", copy_target="offsite:borg", copy_config=conf)
        secrets = guard.copy_secrets(config)
        self.assertEqual(set(secrets), {"backup.example.org", "alice", "OBSCURED",
                                        "/root/.ssh/offsite"})
        self.assertEqual([len(s) for s in secrets], sorted(map(len, secrets), reverse=True))
        self.assertEqual(guard.copy_secrets(dict(config, copy_target="gone:borg")), [])
        # S3: the keys and the endpoint, and the endpoint's host on its own.
        self.write(conf, b"[offsite]\ntype = s3\nprovider = Other\naccess_key_id = AKID\n"
                         b"secret_access_key = SECRETKEY\nendpoint = http://s3.example:9000\n"
                         b"force_path_style = true\n")
        self.assertEqual(set(guard.copy_secrets(config)),
                         {"AKID", "SECRETKEY", "http://s3.example:9000", "s3.example"})

    def test_addresses_are_hidden_whatever_the_config_says(self):
        for line, shown in (
            ('{"level":"error","msg":"dial tcp 172.18.0.5:22: connect: connection refused"}',
             "dial tcp …: connect: connection refused"),
            ('{"level":"error","msg":"Put \\"http://10.0.0.2:9000/b/x\\": EOF"}',
             'Put "…/b/x": EOF'),
            ("ssh: connect to host [2001:db8::1]:22: No route", "ssh: connect to host …: No route"),
        ):
            with self.subTest(line=line), mock.patch.object(guard, "tell") as told:
                guard.pass_on(line.encode() + b"\n", [])
                told.assert_called_once_with(shown)

    def test_the_secrets_of_a_borg_target(self):
        config = dict(self.config, copy="borg", copy_target="ssh://cu@copy.example:2222/./b")
        self.assertEqual(guard.copy_secrets(config),
                         ["cu@copy.example:2222", "cu@copy.example", "copy.example"])
        config["copy_target"] = "ssh://cu@copy.example/b"
        self.assertEqual(guard.copy_secrets(config), ["cu@copy.example", "copy.example"])
        config["copy_target"] = "ssh://cu@[2001:db8::1]:22/b"
        self.assertEqual(guard.copy_secrets(config),
                         ["cu@[2001:db8::1]:22", "cu@[2001:db8::1]", "[2001:db8::1]"])
        config["copy_target"] = "ssh://cu@[2001:db8::1]/b"
        self.assertEqual(guard.copy_secrets(config), ["cu@[2001:db8::1]", "[2001:db8::1]"])

    def test_pass_on(self):
        secrets = ["cu@copy.example", "copy.example"]
        stats = {"bytes": 2048, "totalBytes": 4096, "speed": 1024, "eta": 2, "transfers": 1,
                 "checks": 0}
        for line, passed, returned in (
            # rclone --use-json-log
            (json.dumps({"level": "warning", "msg": "Transferred: ...", "stats": stats}),
             '{"copy_progress": {"bytes": 2048, "total": 4096, "speed": 1024.0, "eta": 2, '
             '"files": 1}}', stats),
            (json.dumps({"level": "warning", "stats": {"bytes": 0, "eta": None, "speed": "x"}}),
             '{"copy_progress": {"bytes": 0, "total": null, "speed": null, "eta": null, '
             '"files": null}}', {"bytes": 0, "eta": None, "speed": "x"}),
            ('{"level":"error","msg":"sizes differ","object":"index.1","source":"x"}',
             "index.1: sizes differ", "index.1: sizes differ"),
            ('{"level":"error","msg":"dial tcp copy.example:22: refused"}',
             "dial tcp …:22: refused", "dial tcp …:22: refused"),
            # borg --log-json
            ('{"type": "archive_progress", "original_size": 5000, "compressed_size": 10, '
             '"deduplicated_size": 1, "nfiles": 7, "path": "a", "finished": false}',
             '{"copy_progress": {"bytes": 5000, "total": null, "speed": null, "eta": null, '
             '"files": 7}}', None),
            ('{"type": "archive_progress", "time": 1.0, "finished": true}', "", None),
            ('{"type": "progress_message", "message": "Saving files cache", "finished": false}',
             "", None),
            ('{"type": "log_message", "levelname": "ERROR", "message": "Remote: cu@copy.example: '
             'Permission denied"}', "Remote: …: Permission denied",
             "Remote: …: Permission denied"),
            # plain text
            ("ssh: Could not resolve hostname copy.example: Name or service not known",
             "ssh: Could not resolve hostname …: Name or service not known",
             "ssh: Could not resolve hostname …: Name or service not known"),
            ("42", "42", "42"),
        ):
            with self.subTest(line=line):
                self.stderr.clear()
                self.assertEqual(guard.pass_on(line.encode() + b"\n", secrets), returned)
                self.assertEqual(self.stderr.value(), passed + "\n" if passed else "")
        self.stderr.clear()
        self.assertEqual(guard.pass_on(b"caf\xe9 copy.example\r\n", secrets), "caf\ufffd …")


class CopyRcloneArgv(CopyTest):
    """rclone's argv and environment, with a stand-in for rclone."""

    def test_sync(self):
        started = []

        def popen(argv, **kwargs):
            started.append((argv, kwargs))
            return mock.Mock(stdout=io.BytesIO(b'{"stats": {"bytes": 9, "transfers": 2}}\n'),
                             wait=mock.Mock(return_value=0))
        self.patch(guard.subprocess, "Popen", side_effect=popen)
        self.patch(guard, "borg_locked", return_value=0)
        self.patch(guard.time, "gmtime", return_value=NOW)
        self.patch(guard, "read_passphrase", side_effect=AssertionError("stdin was read"))
        config = dict(self.config, copy_bwlimit="2M")
        with mock.patch.dict(os.environ, {"RCLONE_CONFIG_PASS": "x", "RCLONE_DRY_RUN": "true",
                                          "NOT_RCLONE_X": "kept"}):
            code, out, err = self.serve(f"{PROGRAM} copy nas 30 {h(self.mirror)}", config)
        self.assertEqual(code, 0, err)
        target = f"local:{self.remote}/copy"
        (argv, kwargs), (again, _) = started
        self.assertEqual(argv, ["rclone", "sync", self.staging, target, "--config",
                                self.rclone_conf, "--use-json-log", "--log-level", "NOTICE",
                                "--backup-dir", f"{target}.deleted/2026-11-30T030000Z",
                                "--stats", "2s", "--stats-log-level", "NOTICE",
                                "--bwlimit", "2097152B"])
        # nonce and config are rewritten at the same size: sent again whatever the place keeps.
        self.assertEqual(again, ["rclone", "copy", self.staging, target, "--config",
                                 self.rclone_conf, "--use-json-log", "--log-level", "NOTICE",
                                 "--ignore-times", "--include", "/{nonce,config}"])
        self.assertEqual([k for k in kwargs["env"] if "RCLONE" in k], ["NOT_RCLONE_X"])
        self.assertIs(kwargs["stdin"], subprocess.DEVNULL)
        self.assertIs(kwargs["stderr"], subprocess.STDOUT)
        self.assertEqual(json.loads(out)["bytes"], 9)
        self.assertEqual(json.loads(out)["files"], 2)

    def test_rclone_not_installed(self):
        self.patch(guard, "borg_locked", return_value=0)
        self.patch(guard.subprocess, "Popen",
                   side_effect=FileNotFoundError(errno.ENOENT, "No such file", "rclone"))
        code, out, err = self.serve(f"{PROGRAM} copy nas 30 {h(self.mirror)}")
        self.assertEqual((code, out, err),
                         (127, "", "backup-sidecar guard: rclone: command not found\n"))


class CopyRclone(CopyTest):
    """A real rclone, into a local-type remote of this test's directory. No borg: the stage runs
    as borg with-lock would run it, here."""

    runs_processes = True

    def setUp(self):
        super().setUp()

        def with_lock(args, passphrase, wait, **kwargs):
            self.assertEqual(args, ["with-lock", self.repo, sys.executable,
                                    os.path.realpath(guard.__file__), "--copy-stage"])
            return guard.copy_stage(self.config)
        self.patch(guard, "borg_locked", side_effect=with_lock)
        self.patch(guard.time, "gmtime", return_value=NOW)
        self.patch(guard, "read_passphrase", side_effect=AssertionError("stdin was read"))
        # None of the guard's RCLONE_ variables reaches rclone: with this one it would only
        # pretend to copy.
        environ = mock.patch.dict(os.environ, {"RCLONE_DRY_RUN": "true"})
        environ.start()
        self.addCleanup(environ.stop)
        self.copy = os.path.join(self.remote, "copy")
        self.aside = os.path.join(self.remote, "copy.deleted", "2026-11-30T030000Z")

    def run_copy(self, config=None):
        code, out, err = self.serve(f"{PROGRAM} copy nas 30 {h(self.mirror)}", config)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.count("\n"), 1, out)
        summary = json.loads(out)
        self.assertIsInstance(summary.pop("seconds"), float)
        progress = [json.loads(line)["copy_progress"] for line in err.splitlines()
                    if line.startswith('{"copy_progress": ')]
        self.assertTrue(progress, err)
        self.assertEqual(set(progress[-1]), {"bytes", "total", "speed", "eta", "files"})
        self.assertEqual(progress[-1]["bytes"], summary["bytes"])
        return summary, err

    def test_a_copy_then_another_moves_what_changed_aside(self):
        summary, err = self.run_copy(dict(self.config, copy_bwlimit="100M"))
        first = self.staged()
        self.assertEqual(summary, {"kind": "rclone", "bytes": sum(map(len, first.values())),
                                   "files": len(first), "archive": None})
        self.assertEqual(tree(self.copy), first)
        self.assertFalse(os.path.exists(self.aside))
        # borg's next transaction: a new segment, the index and hints replaced, the config
        # rewritten.
        for name in ("index.2", "hints.2", "integrity.2"):
            os.unlink(os.path.join(self.repo, name))
        added = {"data/0/3": b"segment 3", "index.3": b"i3", "hints.3": b"h3",
                 "integrity.3": b"g3", "config": b"[repository]\nversion = 1\nappend_only = 1\n"}
        for name, data in added.items():
            self.write(os.path.join(self.repo, name), data)
        # The nonce rewritten at its size, with the time it had: only the content tells.
        nonce = os.path.join(self.repo, "nonce")
        times = os.stat(nonce)
        self.write(nonce, b"m")
        os.utime(nonce, ns=(times.st_atime_ns, times.st_mtime_ns))
        summary, err = self.run_copy()
        self.assertEqual(tree(self.copy), self.staged())
        self.assertEqual(tree(self.copy)["nonce"], b"m")
        # Nothing deleted: what the copy no longer holds was moved aside.
        aside = {name: first[name] for name in ("index.2", "hints.2", "integrity.2", "config")}
        self.assertEqual(tree(self.aside), aside)
        # rclone's bytes count the moves too.
        self.assertEqual(summary, {"kind": "rclone", "files": len(added), "archive": None,
                                   "bytes": sum(map(len, [*added.values(), *aside.values()]))})

    def test_copy_check(self):
        code, out, err = self.serve(f"{PROGRAM} copy-check 30")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, "backup-sidecar guard: copy-check: no copy has been made yet\n")
        self.run_copy()
        code, out, err = self.serve(f"{PROGRAM} copy-check 30")
        self.assertEqual((code, json.loads(out)), (0, {"kind": "rclone", "ok": True,
                                                       "differences": 0, "matched": 8,
                                                       "hash": True}))
        self.assertIn("0 differences found", err)
        # The copy tampered with: a segment changed, a file gone.
        with open(os.path.join(self.copy, "data", "0", "1"), "ab") as f:
            f.write(b"x")
        os.unlink(os.path.join(self.copy, "README"))
        code, out, err = self.serve(f"{PROGRAM} copy-check 30")
        self.assertEqual((code, json.loads(out)), (1, {"kind": "rclone", "ok": False,
                                                       "differences": 2, "matched": 6,
                                                       "hash": True}))
        self.assertIn("data/0/1: sizes differ", err)

    def test_rclone_fails(self):
        config = dict(self.config, copy_target="missing:/x")
        code, out, err = self.serve(f"{PROGRAM} copy nas 30 {h(self.mirror)}", config)
        self.assertNotEqual(code, 0)
        self.assertEqual(out, "")
        self.assertIn("didn't find section in config file", err)
        self.assertTrue(err.endswith(f"backup-sidecar guard: copy: rclone sync failed "
                                     f"(exit {code})\n"), err)
        code, out, err = self.serve(f"{PROGRAM} copy-check 30", config)
        self.assertEqual((code, out), (2, ""))
        self.assertTrue(err.endswith("backup-sidecar guard: copy-check: rclone check failed "
                                     "(exit 1)\n"), err)

    def test_the_remotes_secrets_are_not_shown(self):
        # A backend rclone does not know: its error names the target, whose path holds a value
        # of the section's secrets here.
        self.write(self.rclone_conf, b"[vault]\ntype = nosuchbackend\nhost = secret-host\n")
        config = dict(self.config, copy_target="vault:/srv/secret-host/copy")
        code, out, err = self.serve(f"{PROGRAM} copy nas 30 {h(self.mirror)}", config)
        self.assertNotEqual(code, 0)
        self.assertNotIn("secret-host", err)
        self.assertIn("/srv/…/copy", err)


class CopyBorg(BorgTest):
    TARGET = "ssh://copyuser@copy.example:2222/./borg-copy"
    NAME = "nas-2026-11-30T03:00:00"
    CREATED = json.dumps({"archive": {"name": NAME, "stats": {
        "original_size": 5000, "compressed_size": 4000, "deduplicated_size": 1234, "nfiles": 7}},
        "repository": {"location": TARGET}}, indent=4).encode()
    STDERR = (b'{"type": "archive_progress", "original_size": 2048, "compressed_size": 1000, '
              b'"deduplicated_size": 500, "nfiles": 3, "path": "nas/a", "finished": false}\n'
              b'{"type": "archive_progress", "time": 2.0, "finished": true}\n'
              b'{"type": "log_message", "levelname": "WARNING", "name": "borg.repository", '
              b'"message": "Remote: connected to copyuser@copy.example:2222"}\n'
              b"ssh: connect to host copy.example port 2222: Connection refused\n")
    PROGRESS = {"copy_progress": {"bytes": 2048, "total": None, "speed": None, "eta": None,
                                  "files": 3}}

    def setUp(self):
        super().setUp()
        self.where = h(self.mirror + "/nas")
        self.stamp = self.write(os.path.join(self.mkdirs("nas"), guard.STAMP))
        self.ssh_config = self.write(os.path.join(self.tmp, "copy ssh_config"), b"Host *\n")
        self.passphrase_file = self.write(os.path.join(self.tmp, "copy.passphrase"),
                                          b"copy-s3cret\n")
        self.config.update(copy="borg", copy_target=self.TARGET, copy_config=self.ssh_config,
                           copy_passphrase_file=self.passphrase_file)
        self.patch(guard.time, "gmtime", return_value=NOW)
        self.lock_is_held = self.patch(guard, "lock_is_held", return_value=False)
        environ = mock.patch.dict(os.environ, {"SSH_ORIGINAL_COMMAND": f"{PROGRAM} copy"})
        environ.start()
        self.addCleanup(environ.stop)

    def fake_borg(self, **kwargs):
        """As BorgTest's, but the client's stdin is never read: the passphrase is the file's."""
        fake = super().fake_borg(**kwargs)
        self.patch(guard, "read_passphrase", side_effect=AssertionError("stdin was read"))
        return fake

    def assertCopyEnv(self, call):
        self.assertEqual(call.passphrase, b"copy-s3cret")
        self.assertEqual(call.env["BORG_RSH"], f"ssh -F '{self.ssh_config}' -o BatchMode=yes")
        for key, value in guard.BORG_ENV.items():
            self.assertEqual(call.env[key], value)
        borg = {k for k in call.env if k.startswith("BORG_")}
        self.assertEqual(borg, set(guard.BORG_ENV) | {"BORG_PASSPHRASE_FD", "BORG_RSH"})
        self.assertNotIn("SSH_ORIGINAL_COMMAND", call.env)
        self.assertNotIn("copy-s3cret", " ".join(map(str, call.argv)))
        self.assertNotIn("copy-s3cret", " ".join(call.env.values()))
        self.assertIs(call.kwargs["stdin"], subprocess.DEVNULL)

    def break_lock_argv(self):
        return ["borg", "break-lock", "--umask", "0027", self.TARGET]

    def create_argv(self, *rate):
        return ["borg", "create", "--umask", "0027", "--lock-wait", "1", "--json", "--progress",
                "--log-json", *rate, f"{self.TARGET}::{self.NAME}", "."]

    def prune_argv(self, *rules):
        return ["borg", "prune", "--umask", "0027", "--lock-wait", "1", "--log-json",
                "--glob-archives", guard.own_archives("nas"), *rules, self.TARGET]

    def copy(self, config=None):
        return self.serve(f"{PROGRAM} copy nas 30 {self.where}", config)

    def test_create_then_prune_into_the_second_repository(self):
        fake = self.fake_borg(stdout=self.CREATED, stderr=self.STDERR)
        code, out, err = self.copy()
        self.assertEqual(code, 0, err)
        self.assertEqual(fake.argvs, [
            self.break_lock_argv(),
            self.create_argv(),
            self.prune_argv("--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"),
        ])
        for call in fake.calls:
            self.assertCopyEnv(call)
        break_lock, create, prune = fake.calls
        self.assertIsNotNone(create.kwargs["preexec_fn"])  # in the mirror directory
        for call in (break_lock, prune):
            self.assertIs(call.kwargs["stdout"], subprocess.DEVNULL)
        summary = json.loads(out)
        self.assertIsInstance(summary.pop("seconds"), float)
        self.assertEqual(summary, {"kind": "borg", "bytes": 1234, "files": 7,
                                   "archive": self.NAME})
        lines = err.splitlines()
        # Each borg's output (the same here) passed on: progress as copy_progress, the rest as
        # text without who and where.
        progress = [json.loads(line) for line in lines if line.startswith("{")]
        self.assertEqual(progress, [self.PROGRESS] * 3)
        self.assertEqual([line for line in lines if not line.startswith("{")],
                         ["Remote: connected to …",
                          "ssh: connect to host … port 2222: Connection refused"] * 3)
        for secret in ("copyuser", "copy.example"):
            self.assertNotIn(secret, err)

    def test_a_running_borg_keeps_its_lock(self):
        self.lock_is_held.return_value = True
        fake = self.fake_borg(stdout=self.CREATED)
        self.assertEqual(self.copy()[0], 0)
        self.assertEqual(fake.argvs[0], self.create_argv())

    def test_refused_without_the_stamp(self):
        os.unlink(self.stamp)
        fake = self.fake_borg()
        code, out, err = self.copy()
        self.assertEqual((code, out), (3, ""))
        self.assertEqual(err, "backup-sidecar guard: copy: refusing to copy: the last run of the "
                         "mirror did not complete (no .backup-sidecar-complete)\n")
        self.assertEqual(fake.calls, [])

    def test_the_copys_retention(self):
        for settings, rules in (
            ({"copy_keep_daily": "30", "copy_keep_within": "1Y", "copy_keep_monthly": "0"},
             ["--keep-within", "1Y", "--keep-daily", "30", "--keep-weekly", "4"]),
            ({"keep_within": "2d", "copy_keep_weekly": "52"},
             ["--keep-within", "2d", "--keep-daily", "7", "--keep-weekly", "52",
              "--keep-monthly", "6"]),
            ({"keep_daily": "0", "copy_keep_daily": "3"},
             ["--keep-daily", "3", "--keep-weekly", "4", "--keep-monthly", "6"]),
            ({"copy_keep_daily": "0", "copy_keep_weekly": "0", "copy_keep_monthly": "0"}, None),
        ):
            with self.subTest(settings=settings):
                fake = self.fake_borg(stdout=self.CREATED)
                self.assertEqual(self.copy(dict(self.config, **settings))[0], 0)
                self.assertEqual(fake.argvs[1:], [self.create_argv()]
                                 + ([self.prune_argv(*rules)] if rules else []))

    def test_the_bandwidth_limit(self):
        for value, rate in (("10M", ["--upload-ratelimit", "10240"]),
                            ("2K", ["--upload-ratelimit", "2"]),
                            ("1000", ["--upload-ratelimit", "1"]),
                            ("1G", ["--upload-ratelimit", "1048576"]), ("0", []), ("", [])):
            with self.subTest(value=value):
                fake = self.fake_borg(stdout=self.CREATED)
                self.assertEqual(self.copy(dict(self.config, copy_bwlimit=value))[0], 0)
                self.assertEqual(fake.argvs[1], self.create_argv(*rate))

    def test_failures(self):
        for codes, exit, calls, last in (
            ([3], 3, 1, "copy: borg break-lock failed (exit 3)"),
            ([0, 2], 2, 2, "copy: borg create failed (exit 2)"),
            ([0, 1, 2], 2, 3, "copy: borg prune failed (exit 2)"),
        ):
            with self.subTest(codes=codes):
                fake = self.fake_borg(codes=codes, stdout=self.CREATED)
                code, out, err = self.copy()
                self.assertEqual((code, out, len(fake.calls)), (exit, "", calls))
                self.assertEqual(err.splitlines()[-1], f"backup-sidecar guard: {last}")
        # A warning of create: the copy is made, and the exit code says so.
        fake = self.fake_borg(codes=[0, 1, 0], stdout=self.CREATED)
        code, out, err = self.copy()
        self.assertEqual((code, json.loads(out)["archive"]), (1, self.NAME))

    def test_the_passphrase_file(self):
        fake = self.fake_borg(stdout=self.CREATED)
        self.write(self.passphrase_file, b"p w\r\n")
        self.assertEqual(self.copy()[0], 0)
        self.assertEqual({call.passphrase for call in fake.calls}, {b"p w"})
        self.write(self.passphrase_file, b"x" * (guard.MAX_PASSPHRASE + 1))
        fake = self.fake_borg()
        self.assertEqual(self.copy()[:2], (2, ""))
        os.unlink(self.passphrase_file)
        code, out, err = self.copy()
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, "backup-sidecar guard: copy: cannot read the copy's passphrase file "
                         f"{self.passphrase_file}: No such file or directory\n")
        self.assertEqual(fake.calls, [])

    def test_copy_check(self):
        for codes, exit, ok in (([0], 0, True), ([1], 1, False)):
            with self.subTest(codes=codes):
                fake = self.fake_borg(codes=codes, stderr=self.STDERR)
                code, out, err = self.serve(f"{PROGRAM} copy-check 300")
                self.assertEqual((code, json.loads(out)), (exit, {
                    "kind": "borg", "ok": ok, "differences": None, "matched": None,
                    "hash": None}))
                self.assertEqual(fake.argvs, [["borg", "check", "--umask", "0027", "--lock-wait",
                                               "300", self.TARGET]])
                self.assertCopyEnv(fake.calls[0])
                self.assertIs(fake.calls[0].kwargs["stdout"], subprocess.DEVNULL)
                self.assertNotIn("copy.example", err)
                self.assertIn("Remote: connected to …", err)
        self.fake_borg(codes=[2])
        code, out, err = self.serve(f"{PROGRAM} copy-check 300")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, "backup-sidecar guard: copy-check: borg check failed (exit 2)\n")


class CopySetup(GuardTest):
    def test_an_rclone_copy(self):
        conf = self.write(os.path.join(self.tmp, "rclone.conf"),
                          b"[offsite]\ntype = sftp\nhost = secret.example\n")
        config = dict(self.config, copy="rclone", copy_target="offsite:borg", copy_config=conf)
        os.chmod(conf, 0o644)
        self.assertEqual(guard.setup_copy(config), 0)
        self.assertEqual(self.stdout.value(), "copy rclone to offsite:borg (sftp)\n"
                         f"warning: {conf} is readable by group or others: chmod 600 {conf}\n")
        os.chmod(conf, 0o600)
        self.stdout.clear()
        self.assertEqual(guard.setup_copy(config), 0)
        self.assertEqual(self.stdout.value(), "copy rclone to offsite:borg (sftp)\n")
        os.unlink(conf)
        self.stdout.clear()
        self.assertEqual(guard.setup_copy(config), 0)
        self.assertIn(f"warning: {conf} does not exist", self.stdout.value())
        self.stdout.clear()
        self.assertEqual(guard.setup_copy(dict(config, copy="")), 0)
        self.assertEqual(self.stdout.value(), "")

    def borg_copy(self):
        ssh_config = self.write(os.path.join(self.tmp, "ssh_config"), b"Host *\n")
        passphrase = self.write(os.path.join(self.tmp, "copy.passphrase"), b"copy-s3cret\n")
        os.chmod(ssh_config, 0o640)
        os.chmod(passphrase, 0o600)
        return dict(self.config, copy="borg", copy_target="ssh://cu@copy.example/./copy",
                    copy_config=ssh_config, copy_passphrase_file=passphrase)

    def test_a_borg_copy_makes_the_second_repository(self):
        config = self.borg_copy()
        target = config["copy_target"]
        fake = self.fake_borg(codes=[2, 0],
                              stderr=f"Repository {target} does not exist.\n".encode())
        self.assertEqual(guard.setup_copy(config), 0)
        self.assertEqual(fake.argvs, [
            ["borg", "list", "--umask", "0027", "--short", "--last", "1", target],
            ["borg", "init", "--umask", "0027", "--encryption", "repokey", target],
        ])
        for call in fake.calls:
            self.assertEqual(call.passphrase, b"copy-s3cret")
            self.assertEqual(call.env["BORG_RSH"],
                             f"ssh -F {config['copy_config']} -o BatchMode=yes")
        self.assertEqual(self.stdout.value(), "copy borg to ssh://…/./copy\n"
                         f"warning: {config['copy_config']} is readable by group or others: "
                         f"chmod 600 {config['copy_config']}\n"
                         "created the copy's repository ssh://…/./copy (repokey)\n")

    def test_a_borg_copys_repository_that_exists_or_cannot_be_reached(self):
        config = self.borg_copy()
        fake = self.fake_borg(codes=[0])
        self.assertEqual(guard.setup_copy(config), 0)
        self.assertEqual(len(fake.calls), 1)
        self.assertIn("the copy's repository ssh://…/./copy exists", self.stdout.value())
        fake = self.fake_borg(codes=[2], stderr=b"Remote: Permission denied (publickey).\n")
        # A warning, not a failure: the remote's entrypoint runs the setup at every start.
        self.assertEqual(guard.setup_copy(config), 0)
        self.assertEqual(len(fake.calls), 1)
        self.assertEqual(self.stderr.value(), "Remote: Permission denied (publickey).\n"
                         "warning: cannot open the copy's repository ssh://…/./copy (exit 2): "
                         "the copies fail until it opens\n")

    def test_setup_sets_the_copy_up_after_the_repository(self):
        reader = mock.Mock(pw_uid=os.getuid(), pw_gid=os.getgid())
        self.patch(guard.pwd, "getpwnam", return_value=reader)
        setup_copy = self.patch(guard, "setup_copy", return_value=4)
        self.assertEqual(guard.setup(dict(self.config, repository="")), 4)
        setup_repository = self.patch(guard, "setup_repository", return_value=2)
        self.assertEqual(guard.setup(self.config), 2)
        setup_repository.assert_called_once_with(self.config, reader)
        self.assertEqual(setup_copy.call_count, 1)


# ---- the owner's commands and main() ----------------------------------------------------------


class Main(GuardTest):
    runs_processes = True  # the guard as a program

    def main(self, argv, environ):
        with mock.patch.object(sys, "argv", ["guard"] + argv), \
                mock.patch.dict(os.environ, environ, clear=True), \
                mock.patch.object(guard, "load_config", return_value=self.config), \
                mock.patch.object(guard, "serve", side_effect=SystemExit(9)) as serve, \
                mock.patch.object(guard, "setup", return_value=0) as setup, \
                mock.patch.object(guard, "compact", return_value=0) as compact, \
                mock.patch.object(guard, "rollback", return_value=0) as rollback, \
                mock.patch.object(guard, "copy_stage", return_value=0) as copy_stage:
            self.copy_stage = copy_stage
            with self.assertRaises(SystemExit) as e:
                guard.main()
        return e.exception.code, serve, setup, compact, rollback

    def test_the_key_never_reaches_the_owners_commands(self):
        for flag in ("--setup", "--compact", "--rollback", "--copy-stage"):
            for command in ("backup-sidecar-guard hello", "", flag):
                with self.subTest(flag=flag, command=command):
                    code, serve, setup, compact, rollback = self.main(
                        [flag, "1"], {"SSH_ORIGINAL_COMMAND": command})
                    self.assertEqual(code, 9)
                    serve.assert_called_once_with(command)
                    for owner in (setup, compact, rollback, self.copy_stage):
                        owner.assert_not_called()

    def test_without_a_command_it_is_no_shell(self):
        code, serve, *_ = self.main([], {})
        serve.assert_called_once_with(None)
        code, serve, *_ = self.main(["--help"], {})
        serve.assert_called_once_with(None)

    def test_the_owners_commands(self):
        code, serve, setup, compact, rollback = self.main(["--setup"], {})
        self.assertEqual(code, 0)
        setup.assert_called_once_with(self.config)
        serve.assert_not_called()
        code, serve, setup, compact, rollback = self.main(["--compact"], {})
        compact.assert_called_once_with(self.config)
        code, serve, setup, compact, rollback = self.main(["--rollback"], {})
        rollback.assert_called_once_with(self.config, None)
        code, serve, setup, compact, rollback = self.main(["--rollback", "12"], {})
        rollback.assert_called_once_with(self.config, 12)
        code, serve, setup, compact, rollback = self.main(["--copy-stage"], {})
        self.assertEqual(code, 0)
        self.copy_stage.assert_called_once_with(self.config)
        serve.assert_not_called()

    def test_an_owners_command_that_fails_says_why(self):
        with mock.patch.object(sys, "argv", ["guard", "--copy-stage"]), \
                mock.patch.dict(os.environ, {}, clear=True), \
                mock.patch.object(guard, "load_config", return_value=self.config), \
                mock.patch.object(guard, "copy_stage",
                                  side_effect=OSError(errno.EXDEV, "Invalid cross-device link",
                                                      "/backup/.borg.copy.new/data/0/1")), \
                self.assertRaises(SystemExit) as e:
            guard.main()
        self.assertEqual(e.exception.code, 1)
        self.assertEqual(self.stderr.value(), "backup-sidecar guard: copy-stage: Invalid "
                         "cross-device link: /backup/.borg.copy.new/data/0/1\n")

    def test_rollback_takes_a_number(self):
        for to in ("x", "-1", "1.0", ""):
            with self.subTest(to=to):
                code, serve, setup, compact, rollback = self.main(["--rollback", to], {})
                self.assertEqual(code, 1)
                rollback.assert_not_called()
        self.assertIn("backup-sidecar guard: --rollback takes a transaction number",
                      self.stderr.value())

    def test_importing_runs_nothing_and_the_file_runs_as_a_program(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "SSH_ORIGINAL_COMMAND": "backup-sidecar-guard hello", "PYTHONDONTWRITEBYTECODE": "1"}
        imported = subprocess.run([sys.executable, "-c", "import guard"], cwd=HERE, env=env,
                                  capture_output=True, timeout=30)
        self.assertEqual((imported.returncode, imported.stdout, imported.stderr), (0, b"", b""))
        # Refused before the configuration is read, so this does not depend on the machine.
        env["SSH_ORIGINAL_COMMAND"] = "sh\t-c id"
        for environ in (env, {"PATH": env["PATH"]}):
            run = subprocess.run([sys.executable, os.path.join(HERE, "guard.py")], env=environ,
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            self.assertEqual((run.returncode, run.stdout), (1, b""))
            self.assertTrue(run.stderr.startswith(b"backup-sidecar guard: "), run.stderr)


class Owner(GuardTest):
    def test_compact(self):
        borg = self.patch(guard, "borg", return_value=0)
        self.patch(guard, "read_passphrase", return_value=b"s3cret")
        self.assertEqual(guard.compact(self.config), 0)
        self.assertEqual([c.args for c in borg.call_args_list], [
            (["check", self.repo], b"s3cret"),
            (["config", self.repo, "append_only", "0"], b"s3cret"),
            (["compact", self.repo], b"s3cret"),
            (["config", self.repo, "append_only", "1"], b"s3cret"),
        ])

    def test_compact_puts_append_only_back_when_a_step_fails(self):
        for failing in (0, 1, 2):
            with self.subTest(failing=failing):
                codes = [0, 0, 0, 0]
                codes[failing] = 2
                borg = self.patch(guard, "borg", side_effect=codes)
                self.patch(guard, "read_passphrase", return_value=b"s3cret")
                self.assertEqual(guard.compact(self.config), 2)
                self.assertEqual(borg.call_args_list[-1].args[0],
                                 ["config", self.repo, "append_only", "1"])
                self.assertEqual(len(borg.call_args_list), failing + 2)

    def make_repo(self):
        os.makedirs(os.path.join(self.repo, "data", "0"))
        self.write(os.path.join(self.repo, "config"),
                   b"[repository]\nversion = 1\nid = 0123abcd\nappend_only = 1\n")
        self.write(os.path.join(self.repo, "transactions"),
                   b"transaction 3, UTC time 2026-11-28T03:00:00.000000\n"
                   b"transaction 7, UTC time 2026-11-29T03:00:00.000000\n"
                   b"transaction 9, UTC time 2026-11-30T03:00:00.000000\n")
        for name in ("index.7", "index.9", "hints.9", "integrity.9", "README"):
            self.write(os.path.join(self.repo, name))
        for segment in range(1, 10):
            self.write(os.path.join(self.repo, "data", "0", str(segment)))

    def test_rollback(self):
        self.make_repo()
        home = os.path.join(self.tmp, "home")
        cache = os.path.join(home, ".cache", "borg", "0123abcd")
        timestamp = os.path.join(home, ".config", "borg", "security", "0123abcd",
                                 "manifest-timestamp")
        os.makedirs(cache)
        os.makedirs(os.path.dirname(timestamp))
        self.write(timestamp)
        with mock.patch.dict(os.environ, {"HOME": home}):
            self.assertEqual(guard.rollback(self.config, 7), 0)
        self.assertEqual(sorted(os.listdir(self.repo)),
                         ["README", "config", "data", "index.7", "transactions"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.repo, "data", "0")), key=int),
                         [str(n) for n in range(1, 8)])
        aside = [n for n in os.listdir(self.tmp) if n.startswith("borg.rolled-back-")]
        self.assertEqual(len(aside), 1)
        aside = os.path.join(self.tmp, aside[0])
        self.assertEqual(sorted(os.listdir(aside)), ["data", "hints.9", "index.9", "integrity.9"])
        self.assertEqual(sorted(os.listdir(os.path.join(aside, "data"))), ["8", "9"])
        self.assertFalse(os.path.exists(cache))
        self.assertFalse(os.path.exists(timestamp))
        self.assertIn("moved 2 segment(s)", self.stdout.value())

    def test_rollback_lists_and_refuses(self):
        self.make_repo()
        self.assertEqual(guard.rollback(self.config, None), 0)
        self.assertEqual(self.stdout.value().splitlines()[-1],
                         "transaction 9, UTC time 2026-11-30T03:00:00.000000")
        with self.assertRaises(guard.Refused):
            guard.rollback(self.config, 8)
        self.write(os.path.join(self.repo, "lock.exclusive"))
        with self.assertRaises(guard.Refused):
            guard.rollback(self.config, 7)
        self.assertEqual(len(os.listdir(os.path.join(self.repo, "data", "0"))), 9)

    def test_setup(self):
        reader = mock.Mock(pw_uid=os.getuid(), pw_gid=os.getgid())
        getpwnam = self.patch(guard.pwd, "getpwnam", side_effect=[KeyError("x"), reader])
        run = self.patch(guard.subprocess, "run")
        self.patch(guard, "read_passphrase", return_value=b"")
        borg = self.patch(guard, "borg", return_value=0)
        config = dict(self.config, mirror=os.path.join(self.tmp, "new", "mirror"))
        self.assertEqual(guard.setup(config), 0)
        self.assertTrue(os.path.isdir(config["mirror"]))
        run.assert_called_once_with(["useradd", "--system", "--user-group", "--no-create-home",
                                     "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                                     "backup-sidecar-reader"], check=True)
        self.assertEqual(getpwnam.call_count, 2)
        borg.assert_not_called()  # no passphrase, no repository made
        self.assertIn(f"no repository at {self.repo} yet", self.stdout.value())

    def test_setup_makes_an_append_only_repository_the_reader_can_read(self):
        reader = mock.Mock(pw_uid=os.getuid(), pw_gid=os.getgid())
        self.patch(guard.pwd, "getpwnam", return_value=reader)
        self.patch(guard, "read_passphrase", return_value=b"s3cret")

        def init(args, passphrase):
            os.makedirs(os.path.join(self.repo, "data", "0"))
            for name in ("config", os.path.join("data", "0", "1")):
                self.write(os.path.join(self.repo, name))
                os.chmod(os.path.join(self.repo, name), 0o600)
            os.chmod(self.repo, 0o700)
            return 0
        borg = self.patch(guard, "borg", side_effect=init)
        self.assertEqual(guard.setup(self.config), 0)
        borg.assert_called_once_with(["init", "--append-only", "-e", "repokey", self.repo],
                                     b"s3cret")
        self.assertEqual(stat.S_IMODE(os.stat(self.repo).st_mode), 0o2750)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.repo, "data")).st_mode) & 0o2050,
                         0o2050)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.repo, "data", "0", "1")).st_mode),
                         0o640)
        # Existing, not append-only: made append-only.
        borg = self.patch(guard, "borg", return_value=0)
        self.write(os.path.join(self.repo, "config"), b"[repository]\nappend_only = 0\n")
        self.assertEqual(guard.setup(self.config), 0)
        borg.assert_called_once_with(["config", self.repo, "append_only", "1"], b"s3cret")
        # Append-only already: borg is not run.
        borg = self.patch(guard, "borg", return_value=0)
        self.write(os.path.join(self.repo, "config"), b"[repository]\nappend_only = 1\n")
        self.assertEqual(guard.setup(self.config), 0)
        borg.assert_not_called()


if __name__ == "__main__":
    unittest.main()
