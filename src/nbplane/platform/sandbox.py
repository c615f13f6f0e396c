"""Run users' code on the server's machine away from the server's own files: the sandbox
extension point, chosen by NBPLANE_SANDBOX.

The local job executor and the local session launcher start processes that run what users
wrote (job steps, kernels, terminals). A :class:`Sandbox` decides what those processes reach:

- ``bubblewrap`` (``bwrap``, Debian package ``bubblewrap``; the server runs as root): the
  machine read-only; its own /tmp; nbplane's home and the server user's home replaced by empty
  directories, and nbplane's database file and the kubeconfig, where they live elsewhere, by
  /dev/null; the Python that runs nbplane shown again,
  read-only; only the directories the caller names are writable (even inside nbplane's home);
  new PID, IPC and UTS namespaces with their own /proc (the server's ``/proc/<pid>/environ`` is
  out of reach); no capabilities, no new privileges, and the unprivileged user
  NBPLANE_SANDBOX_UID, so root's own files that a read-only view still shows (/etc/shadow, host
  keys, sockets) stay closed. The network is shared: jobs and sessions talk to the server on
  loopback.
- ``none``: the server's own user and files; for one team of trusted users.

Both start the command with exactly the environment the caller builds with
:meth:`Sandbox.environment`: nothing of the server's own (its key, database URL, passwords).

Sandboxed processes run in their own process session and outlive the server (a restarted server
finds them by pid, as before), so bwrap gets no ``--die-with-parent``; :meth:`Sandbox.signal`
reaches the processes inside, which signalling bwrap itself does not.

A pooled Jupyter server starts before anyone owns it and later shows one session's workspace: a
*slot* (:meth:`Sandbox.make_slot`) is an empty directory given to the sandbox at start, which
:meth:`Sandbox.fill_slot` later makes show that workspace (none: a symlink; bubblewrap: a bind
mount that propagates into the running sandbox, so it never sees a workspace before then).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import re
import shutil
import signal as signals
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import psutil

from nbplane.errors import ConfigError
from nbplane.platform import processes
from nbplane.settings import Settings

PASSED_VARIABLES = ("PATH", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")
"""The only variables of the server's environment a sandboxed command gets: where programs and
code are, and how to print text."""


def without_nbplane_settings(environment: Mapping[str, str]) -> dict[str, str]:
    """The environment less every ``NBPLANE_*`` variable (the server's key, database URL,
    tokens): for processes of the server that run notebook code outside a sandbox."""
    return {key: value for key, value in environment.items() if not key.startswith("NBPLANE_")}


class Sandbox(ABC):
    name: ClassVar[str]
    isolates: ClassVar[bool]
    """Whether one user's code is kept from the server's files and other users' directories."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def environment(self, home: Path, variables: Mapping[str, str]) -> dict[str, str]:
        """The whole environment of a sandboxed command: PASSED_VARIABLES of the server's,
        HOME, then ``variables``."""
        passed = {key: os.environ[key] for key in PASSED_VARIABLES if key in os.environ}
        return {**passed, "HOME": str(home), **variables}

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        environment: Mapping[str, str],
        output: int,
        writable: Sequence[Path] = (),
        readable: Sequence[Path] = (),
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``cwd`` with exactly ``environment``, in its own process session,
        its output to the file descriptor ``output``. It may write the directories
        ``writable`` (given to it first) and read ``readable`` (its program, say)."""
        for directory in writable:
            self.give(directory)
        return processes.start(
            self.command(argv, cwd=cwd, writable=writable, readable=readable),
            cwd=cwd,
            environment=environment,
            output=output,
        )

    @abstractmethod
    def command(
        self, argv: Sequence[str], *, cwd: Path, writable: Sequence[Path], readable: Sequence[Path]
    ) -> list[str]:
        """The command line that runs ``argv`` inside the sandbox."""

    def give(self, directory: Path) -> None:  # noqa: B027 - without a sandbox all is ours
        """Let the sandboxed command write ``directory`` and what is in it."""

    def signal(self, pid: int, number: int) -> None:
        """Send ``number`` to the processes of the command started as ``pid``."""
        processes.signal_group(pid, number)

    def exit_code(self, code: int) -> int:
        """The command's exit code as Popen reports it (negative: killed by that signal)."""
        return code

    def make_slot(self, slot: Path) -> None:
        """Create ``slot``: an empty directory to give a sandbox before it has anything to
        show."""
        empty = slot.with_name(f"{slot.name}.empty")
        empty.mkdir(mode=0o700, parents=True, exist_ok=True)
        slot.symlink_to(empty, target_is_directory=True)

    def fill_slot(self, slot: Path, directory: Path) -> None:
        """Make ``slot`` show ``directory``, also to a sandbox started before."""
        fresh = slot.with_name(f"{slot.name}.new")
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(directory, target_is_directory=True)
        fresh.replace(slot)  # atomic: the server never sees the slot missing

    def clear_slot(self, slot: Path) -> None:  # noqa: B027 - a symlink is removed like a file
        """Undo ``fill_slot`` and ``make_slot``, so that removing the slot's parent can never
        reach into the directory it showed; call it before deleting a slot."""


class NoSandbox(Sandbox):
    """Runs the command as the server's own user, seeing what the server sees."""

    name: ClassVar[str] = "none"
    isolates: ClassVar[bool] = False

    def command(
        self, argv: Sequence[str], *, cwd: Path, writable: Sequence[Path], readable: Sequence[Path]
    ) -> list[str]:
        return list(argv)


class Bubblewrap(Sandbox):
    """bwrap namespaces over a read-only view of the machine, as an unprivileged user."""

    name: ClassVar[str] = "bubblewrap"
    isolates: ClassVar[bool] = True

    def command(
        self, argv: Sequence[str], *, cwd: Path, writable: Sequence[Path], readable: Sequence[Path]
    ) -> list[str]:
        secret, secret_files = self._secret_directory(), self._secret_files()
        shown = [path.resolve() for path in writable]
        for path in shown:
            held = [*secret_files, *([secret] if secret is not None else [])]
            if any(place.is_relative_to(path) for place in held):
                raise ConfigError(
                    "a sandbox cannot be given a directory that holds nbplane's home or database",
                    field="NBPLANE_HOME",
                )
        emptied = [Path("/tmp"), *self._private_directories()]
        args = [_program("bwrap"), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for private in ("/tmp", "/dev/shm"):
            args += ["--perms", "1777", "--tmpfs", private]
        for hidden in emptied[1:]:
            args += ["--perms", "0755", "--tmpfs", str(hidden)]
        for path in [*self._runtime(), *(path.resolve() for path in readable)]:
            args += [*_passable(path, emptied, secret), "--ro-bind", str(path), str(path)]
        if secret is not None:  # after the binds above, so none of them shows it again
            args += [*_passable(secret, emptied, secret), "--perms", "0711", "--tmpfs", str(secret)]
            emptied.append(secret)
        for hidden_file in secret_files:
            args += ["--ro-bind", "/dev/null", str(hidden_file)]
        for path in shown:
            args += [*_passable(path, emptied, secret), "--bind", str(path), str(path)]
        uid = str(self.settings.sandbox_uid)
        return [
            *args,
            *("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session"),
            # setpriv needs these three to become the unprivileged user; it drops them all.
            *("--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"),
            *("--cap-add", "CAP_SETPCAP", "--"),
            _program("setpriv"),
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
            # bwrap's own --chdir, still root without capabilities, cannot enter a 0700
            # directory of the sandbox's user; the sandbox's user can.
            _program("env"),
            f"--chdir={cwd.resolve()}",
            "--",
            *argv,
        ]

    def give(self, directory: Path) -> None:
        """Hand the directory to the sandbox's user: all of it the first time (symlinks
        themselves, never what they point at)."""
        uid = self.settings.sandbox_uid
        if directory.lstat().st_uid == uid:
            return
        for parent, directories, files in os.walk(directory):
            for name in [*directories, *files]:
                os.chown(os.path.join(parent, name), uid, uid, follow_symlinks=False)
        os.chown(directory, uid, uid, follow_symlinks=False)  # last: a retry redoes the rest

    def signal(self, pid: int, number: int) -> None:
        """bwrap does not pass signals on: send them to every process inside; SIGKILL also
        ends bwrap, and with its namespace's first process everything left inside."""
        try:
            leader = psutil.Process(pid)
            inside = leader.children(recursive=True)
        except psutil.Error:
            return
        for process in [*inside, leader] if number == signals.SIGKILL else inside:
            with contextlib.suppress(psutil.Error):
                process.send_signal(number)

    def exit_code(self, code: int) -> int:
        """bwrap exits with 128 + N when its command was killed by signal N."""
        return -(code - 128) if 128 < code <= 128 + signals.NSIG else code

    def make_slot(self, slot: Path) -> None:
        """A directory bound onto itself as a shared mount: mounts on it later reach every
        sandbox that was given it."""
        slot.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.give(slot)
        _mount(slot, slot, _MS_BIND)
        _mount(None, slot, _MS_SHARED)

    def fill_slot(self, slot: Path, directory: Path) -> None:
        _mount(directory, slot, _MS_BIND)

    def clear_slot(self, slot: Path) -> None:
        for _ in range(64):  # each round detaches the top mount of one place; a slot has two
            mounted = _mount_points(slot)
            if not mounted:
                return
            _detach(mounted[-1])
        raise OSError(f"cannot unmount everything under {slot}")

    def _secret_directory(self) -> Path | None:
        home = self.settings.home.resolve()
        return home if home.is_dir() else None

    def _private_directories(self) -> list[Path]:
        """The server user's home, ``$HOME`` and the account's own where they differ (a server
        started with another HOME): shown empty (the Python one holds is bound back)."""
        homes = {Path.home().resolve(), Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()}
        return sorted(home for home in homes if home.is_dir() and home != Path("/"))

    def _runtime(self) -> list[Path]:
        """Where the Python that runs nbplane lives, when it is inside a directory shown empty
        (e.g. pyenv under /root), never that directory itself; never inside nbplane's home."""
        hidden = [Path("/tmp"), *self._private_directories()]
        secret = self._secret_directory()
        return [
            path
            for path in _runtime_paths()
            if any(path != place and path.is_relative_to(place) for place in hidden)
            and not (secret is not None and path.is_relative_to(secret))
        ]

    def _secret_files(self) -> list[Path]:
        """The SQLite file of nbplane's database, its journals, and the kubeconfig, where they
        exist outside nbplane's home."""
        candidates: list[Path] = []
        database = sqlite_file(self.settings.resolved_store_url)
        if database is not None:
            suffixes = ("", "-wal", "-shm", "-journal")
            candidates += [database.with_name(database.name + end) for end in suffixes]
        if self.settings.kubeconfig is not None:
            candidates.append(self.settings.kubeconfig)
        hidden = [Path("/tmp"), *self._private_directories()]
        if (secret := self._secret_directory()) is not None:
            hidden.append(secret)
        found = [path.resolve() for path in candidates if path.is_file()]
        return [path for path in found if not any(path.is_relative_to(place) for place in hidden)]


SANDBOXES: dict[str, type[Sandbox]] = {"bubblewrap": Bubblewrap, "none": NoSandbox}


def sandbox_named(settings: Settings) -> Sandbox:
    """The sandbox NBPLANE_SANDBOX names; ``auto`` is bubblewrap where it works, else none."""
    name = settings.sandbox
    if name == "auto":
        name = "none" if bubblewrap_problem(settings) else "bubblewrap"
    elif name not in SANDBOXES:
        raise ConfigError(
            f"unknown sandbox {name!r}; choose auto, {', '.join(SANDBOXES)}",
            field="NBPLANE_SANDBOX",
        )
    elif name == "bubblewrap" and (problem := bubblewrap_problem(settings)):
        raise ConfigError(f"NBPLANE_SANDBOX=bubblewrap: {problem}", field="NBPLANE_SANDBOX")
    return SANDBOXES[name](settings)


def isolation_problem(settings: Settings) -> str | None:
    """Why the processes of the local executor and launcher would not be isolated, if so."""
    if settings.sandbox == "none":
        return "NBPLANE_SANDBOX is none"
    sandbox_named(settings)  # an unknown name, or bubblewrap asked for but unusable, stops here
    return bubblewrap_problem(settings) if settings.sandbox == "auto" else None


def bubblewrap_problem(settings: Settings) -> str | None:
    """Why bubblewrap cannot be used on this machine; None when a trial run works."""
    return _bubblewrap_problem(settings.sandbox_uid)


@functools.cache
def _bubblewrap_problem(uid: int) -> str | None:
    if os.geteuid() != 0:
        return "the server does not run as root, which bubblewrap needs here"
    for program, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux")):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian package {package})"
    trial = Bubblewrap(Settings(sandbox_uid=uid, home=Path("/nonexistent")))
    command = trial.command(["/bin/true"], cwd=Path("/"), writable=[], readable=[])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return f"bwrap does not work here ({reason})"
    return None


def _passable(path: Path, emptied: Sequence[Path], secret: Path | None) -> list[str]:
    """Arguments that create the directories leading to ``path`` inside an emptied directory
    so the sandbox's user can pass through them (bwrap would make them 0700, root's); inside
    nbplane's home without reading them, so it cannot even list which directories it holds."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if any(parent != top and parent.is_relative_to(top) for top in emptied):
            inside = secret is not None and parent.is_relative_to(secret)
            args += ["--perms", "0711" if inside else "0755", "--dir", str(parent)]
    return args


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed", field="NBPLANE_SANDBOX")
    return found


@functools.cache
def _runtime_paths() -> list[Path]:
    """The installation of this Python and the places it imports from, outermost only; not
    ``sys.path[0]``, the directory the server was started from with ``python -m``."""
    candidates = {
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sys.exec_prefix),
        Path(sys.executable).resolve().parent.parent,
        *(Path(entry) for entry in sys.path[1:] if entry),
    }
    existing = sorted({path.resolve() for path in candidates if path.exists()})
    return [
        path
        for path in existing
        if not any(path != other and path.is_relative_to(other) for other in existing)
    ]


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for another database or an in-memory one."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "").absolute()


_MS_BIND = 4096
_MS_SHARED = 1 << 20
_MNT_DETACH = 2


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: Path | None, target: Path, flags: int) -> None:
    given = os.fsencode(source) if source is not None else None
    if _libc().mount(given, os.fsencode(target), None, ctypes.c_ulong(flags), None) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), str(target))


def _detach(target: Path) -> None:
    if _libc().umount2(os.fsencode(target), _MNT_DETACH) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), str(target))


def _mount_points(place: Path) -> list[Path]:
    """Mount points at or under ``place`` in this mount namespace, oldest first."""
    place = place.absolute()
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field = line.split(" ")[4]
        point = Path(re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field))
        if point.is_relative_to(place):
            found.append(point)
    return found
