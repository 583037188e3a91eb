"""A throw-away PostgreSQL server for tests: Debian's server binaries, a temporary directory, loopback, its own port.

No system service is used or touched: ``initdb`` creates a cluster in a fresh temporary directory, ``pg_ctl`` starts it
listening on ``127.0.0.1`` (a free port) and on a unix socket inside that directory, a database role with a password and
one database are created, and :meth:`PostgresServer.stop` shuts it down (``-m fast``) and removes the directory.

PostgreSQL refuses to run as root; when the tests run as root the server runs as an unprivileged OS account
(``$SB3_BAYES_PG_OS_USER``, else ``postgres`` as created by Debian's package, else ``nobody``), which owns the temporary
directory. Every failure raises :class:`PostgresUnavailable` with the reason, for the tests to fail with (never skip).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Server binaries needed, looked up on PATH and then in Debian's ``/usr/lib/postgresql/<version>/bin``.
BINARIES = ("initdb", "pg_ctl", "createdb")
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: OS accounts tried, in order, to run the server when we are root.
OS_USER_ENV_VAR = "SB3_BAYES_PG_OS_USER"
OS_USER_CANDIDATES = ("postgres", "nobody")
INSTALL_HINT = "install Debian's PostgreSQL server (as root: apt-get install -y postgresql; .ci/run does this)"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL test server could not be found, initialised or started (the message says why)."""


def find_bin_dir() -> Path:
    """Folder holding ``initdb``, ``pg_ctl`` and ``createdb``: that of ``initdb`` on PATH, else the newest Debian one."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb is not None:
        # /usr/local/bin/initdb may be a link into /usr/lib/postgresql/<v>/bin: use the real folder (one version)
        candidates.append(Path(os.path.realpath(initdb)).parent)
    candidates += sorted(
        (Path(path) for path in glob.glob(DEBIAN_BIN_GLOB)),
        key=lambda path: [int(part) if part.isdigit() else 0 for part in path.parent.name.split(".")],
        reverse=True,
    )
    for folder in candidates:
        if all((folder / name).is_file() for name in BINARIES):
            return folder
    raise PostgresUnavailable(
        f"PostgreSQL server binaries ({', '.join(BINARIES)}) not found on PATH nor under {DEBIAN_BIN_GLOB}: {INSTALL_HINT}"
    )


def server_os_user() -> pwd.struct_passwd | None:
    """The account to run the server as: None (ourselves) unless we are root, where PostgreSQL refuses to run."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get(OS_USER_ENV_VAR)
    for name in [wanted] if wanted else OS_USER_CANDIDATES:
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        if account.pw_uid != 0:
            return account
    raise PostgresUnavailable(
        f"running as root, and none of the accounts {[wanted] if wanted else list(OS_USER_CANDIDATES)} exists as a"
        f" non-root user to run PostgreSQL as (initdb refuses root): create one or set {OS_USER_ENV_VAR}"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One running test server; ``url`` is a ``postgresql://`` URL with password on ``127.0.0.1``."""

    root: Path
    bin_dir: Path
    port: int
    user: str
    password: str
    database: str
    version: str
    os_user: pwd.struct_passwd | None = None
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.root / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, driver: str | None = None) -> str:
        """SQLAlchemy URL (``postgresql://``, or ``postgresql+<driver>://``) of the test database over TCP."""
        scheme = "postgresql" if driver is None else f"postgresql+{driver}"
        return f"{scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def log_tail(self, n_chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n_chars:]
        except OSError as exc:
            return f"(no server log: {exc})"

    def is_running(self) -> bool:
        proc = _run(self, ["pg_ctl", "-D", str(self.data_dir), "status"], check=False)
        return proc.returncode == 0

    def stop(self) -> None:
        """Fast shutdown (immediate if that fails), then remove the temporary directory."""
        try:
            if self.data_dir.is_dir():
                proc = _run(self, ["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"], check=False)
                if proc.returncode != 0 and self.is_running():
                    _run(self, ["pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"], check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(server: PostgresServer, args: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a server binary as the server's OS user; raise :class:`PostgresUnavailable` with its output if it fails."""
    command = [str(server.bin_dir / args[0]), *args[1:]]
    kwargs: dict = {}
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    if server.os_user is not None:
        kwargs.update(user=server.os_user.pw_uid, group=server.os_user.pw_gid, extra_groups=[])
        env.update(HOME=str(server.root), USER=server.os_user.pw_name, LOGNAME=server.os_user.pw_name)
    try:
        proc = subprocess.run(
            command, cwd=server.root, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PostgresUnavailable(f"{' '.join(command)} could not run: {type(exc).__name__}: {exc}") from exc
    if check and proc.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(command)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
            f"--- stderr ---\n{proc.stderr[-3000:]}\n--- server log ---\n{server.log_tail()}"
        )
    return proc


def start_server(user: str = "sb3bayes", database: str = "optuna", tries: int = 3) -> PostgresServer:
    """Initialise and start a server in a new temporary directory; the caller must :meth:`~PostgresServer.stop` it."""
    bin_dir = find_bin_dir()
    os_user = server_os_user()
    # Not under pytest's tmp_path: that is private to root (0700) and the server may run as another account.
    # Kept short: a unix socket path must fit in 107 bytes.
    base = tempfile.gettempdir()
    if os_user is not None or len(base) > 60:  # another account must reach it; the socket path must stay short
        base = "/tmp"
    root = Path(tempfile.mkdtemp(prefix="sb3-bayes-pg-", dir=base))
    server = PostgresServer(
        root=root,
        bin_dir=bin_dir,
        port=0,
        user=user,
        password=secrets.token_hex(12),
        database=database,
        version="?",
        os_user=os_user,
    )
    try:
        server.socket_dir.mkdir()
        password_file = root / "password"
        password_file.write_text(server.password + "\n")
        if os_user is not None:
            for path in (root, server.socket_dir, password_file):
                os.chown(path, os_user.pw_uid, os_user.pw_gid)
        os.chmod(root, 0o700)
        version = _run(server, ["pg_ctl", "--version"]).stdout.strip()
        server.version = version
        _run(
            server,
            ["initdb", "-D", str(server.data_dir), "-U", user, f"--pwfile={password_file}", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        )  # fmt: skip
        password_file.unlink()

        last_error: PostgresUnavailable | None = None
        for _ in range(tries):  # a free port can be taken between free_port() and the server's bind
            server.port = free_port()
            options = (
                f"-p {server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={server.socket_dir}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
            )
            try:
                _run(
                    server,
                    ["pg_ctl", "-D", str(server.data_dir), "-l", str(server.log_file), "-o", options, "-w", "-t", "60",
                     "start"],
                )  # fmt: skip
                last_error = None
                break
            except PostgresUnavailable as exc:
                last_error = exc
                time.sleep(0.5)
        if last_error is not None:
            raise last_error
        _run(server, ["createdb", "-h", str(server.socket_dir), "-p", str(server.port), "-U", user, database])
        return server
    except BaseException:
        server.stop()
        raise
