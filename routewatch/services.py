"""Find or start the two real services routewatch needs: PostgreSQL and Mosquitto.

``ensure_services(settings)`` reuses the services at ``Settings.database_url`` /
``Settings.mqtt_url`` when they answer, and otherwise starts *private* instances under
``Settings.state_dir`` on free ports (a PostgreSQL cluster made with the machine's
``initdb``/``pg_ctl``, a ``mosquitto`` with a generated config). Private instances are
stopped when the context exits, also on SIGTERM.

PostgreSQL refuses to run as root, so when we are root the cluster is owned by and run as
the unprivileged ``postgres`` system user (``runuser -u postgres --``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from routewatch.broker import BROKER_QUEUE_CONFIG
from routewatch.mqtt_endpoint import MqttEndpoint, connack_ok, connect_packet_v311
from routewatch.settings import Settings

log = logging.getLogger(__name__)

APT_PACKAGES = ("postgresql", "mosquitto", "nats-server")
PG_SYSTEM_USER = "postgres"
PROBE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 30.0
# Unix socket paths are limited to ~107 bytes (sun_path); leave room for ".s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 80
_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A service could not be found, installed or started; the message says what to do."""


# --------------------------------------------------------------------------- probing


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tcp_open(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when something accepts TCP connections at ``host:port`` within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def mqtt_address(url: str) -> tuple[str, int]:
    """(host, port) of an ``mqtt://`` or ``mqtts://`` URL (default ports 1883 / 8883)."""
    broker = MqttEndpoint.parse(url)
    return broker.host, broker.port


def mqtt_reachable(
    url: str, timeout_s: float = PROBE_TIMEOUT_S, settings: Settings | None = None
) -> bool:
    """True when an MQTT 3.1.1 broker at ``url`` accepts an anonymous (or URL-credentialed)
    CONNECT, over TLS for ``mqtts://`` (with the TLS files of ``settings``). A raw
    CONNECT/CONNACK exchange, so no client library threads are started."""
    try:
        broker = MqttEndpoint.from_settings(settings, url) if settings else MqttEndpoint.parse(url)
        context = broker.ssl_context()
    except ValueError as exc:
        log.warning("%s", exc)
        return False
    packet = connect_packet_v311(f"rw-probe-{os.getpid()}", broker.username, broker.password)
    try:
        with (
            socket.create_connection((broker.host, broker.port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=broker.host) if context else raw as s,
        ):  # wrap_socket takes raw over (closing raw afterwards is a no-op)
            s.settimeout(timeout_s)
            s.sendall(packet)
            connack = s.recv(4)
            s.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:  # ssl.SSLError (a refused certificate) included
        return False
    return connack_ok(connack)


def with_dbname(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` instead (URI stays a URI)."""
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path="/" + dbname))
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def postgres_reachable(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when the PostgreSQL server behind ``url`` accepts a login (to its ``postgres``
    maintenance database, so a not-yet-created target database still counts)."""
    params = conninfo_to_dict(url)
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    if not host.startswith("/") and not tcp_open(host, port, timeout_s):
        return False
    try:
        with psycopg.connect(
            with_dbname(url, "postgres"), connect_timeout=max(1, round(timeout_s * 2))
        ):
            return True
    except psycopg.Error as exc:
        log.warning("PostgreSQL at %s:%s answers but refuses us: %s", host, port, exc)
        return False


def ensure_database(url: str, dbname: str | None = None) -> str:
    """Create database ``dbname`` (default: the one named in ``url``) if missing; return a
    URL for it. Safe to call concurrently: a lost creation race counts as success."""
    name = dbname or str(conninfo_to_dict(url).get("dbname") or "postgres")
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                log.info("created database", extra={"database": name})
            except psycopg.errors.DuplicateDatabase:
                pass
    return with_dbname(url, name)


# --------------------------------------------------------------------------- binaries


def find_binary(name: str) -> str | None:
    """Path of executable ``name``: on PATH, in the sbin folders, or in PostgreSQL's
    versioned bin folders (newest version first)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found:
        return found
    pg_dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for d in pg_dirs:
        candidate = d / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def timescaledb_installed(pg_binary: str) -> bool:
    """Whether the TimescaleDB extension is installed for the PostgreSQL whose binary is
    ``pg_binary`` (its control file in that version's share folder: Debian's
    /usr/share/postgresql/N or a source build's PREFIX/share)."""
    bindir = Path(pg_binary).resolve().parent
    candidates = [
        bindir.parent / "share" / "extension",
        bindir.parent / "share/postgresql/extension",
    ]
    version = bindir.parent.name  # /usr/lib/postgresql/15/bin -> 15
    if version.isdigit():
        candidates.append(Path("/usr/share/postgresql") / version / "extension")
    return any((d / "timescaledb.control").exists() for d in candidates)


def _is_root() -> bool:
    return os.geteuid() == 0


def require_binaries(*names: str) -> dict[str, str]:
    """Paths of the named binaries. When some are missing: as root, install the Debian
    packages with apt-get; otherwise raise ServiceError naming the command to run."""
    missing = [n for n in names if find_binary(n) is None]
    if missing:
        command = ["apt-get", "install", "-y", *APT_PACKAGES]
        if not _is_root() or shutil.which("apt-get") is None:
            raise ServiceError(
                f"missing {', '.join(missing)} and the configured services are not reachable.\n"
                f"Install them (Debian/Ubuntu): sudo apt-get update && sudo {' '.join(command)}\n"
                "or point ROUTEWATCH_DATABASE_URL / ROUTEWATCH_MQTT_URL at running services."
            )
        log.warning("installing %s with apt-get", " ".join(APT_PACKAGES))
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(command, check=True, env=env)
        still = [n for n in names if find_binary(n) is None]
        if still:
            raise ServiceError(f"apt-get ran but {', '.join(still)} is still missing")
    return {n: str(find_binary(n)) for n in names}


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM the child when its parent dies (strictly: when the
    thread that started it ends — start children from a long-lived thread), so a killed
    parent does not leave an orphan holding a port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for(
    check: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise ServiceError(f"{what} did not come up; last log lines:\n{tail}")


# --------------------------------------------------------------------------- private services


class _DirLock:
    """An exclusive flock on ``dir/.lock``: one routewatch process per private instance."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = (directory / ".lock").open("w")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._file.close()
            raise ServiceError(
                f"{directory} is in use by another routewatch process; stop it or set "
                "ROUTEWATCH_STATE_DIR to another folder"
            ) from exc

    def release(self) -> None:
        self._file.close()


class _PrivateService:
    """Context-manager plumbing shared by the private services: ``with X(dir) as x`` is
    ``x.start()`` ... ``x.stop()``, and each holds its directory's lock while running."""

    _lock: _DirLock | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _spawn(
        self, name: str, cmd: list[str], directory: Path, port: int, up: Callable[[], bool]
    ) -> None:
        """Start the server ``cmd`` (its output to ``directory/name.log``) and wait until
        ``up()``."""
        log_path = directory / f"{name}.log"
        self._log = log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            preexec_fn=die_with_parent,
        )
        try:
            _wait_for(up, f"{name} on port {port}", self._proc, log_path)
        except BaseException:
            self.stop()
            raise
        log.info(
            "started private %s",
            name,
            extra={"port": port, "pid": self._proc.pid, "dir": str(directory)},
        )

    def _stop_child(self, name: str, url: str) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            log.info("stopped private %s", name, extra={"url": url})
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class PrivateMosquitto(_PrivateService):
    """A ``mosquitto`` on 127.0.0.1:``port`` with its config, persistence and log in
    ``directory``. ``extra_config`` lines are appended to the generated config (e.g. an
    ``acl_file`` or ``password_file``); ``allow_anonymous=False`` requires logins."""

    directory: Path
    port: int = 0
    extra_config: str = ""
    allow_anonymous: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock: _DirLock | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)
    _run_as: str = field(default="root", init=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        data_dir = self.directory / "data"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {data_dir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            BROKER_QUEUE_CONFIG,  # the engine's backlog is kept, not dropped
        ]
        if _is_root():
            lines.append(f"user {self._run_as}")
        return "\n".join(lines) + "\n" + self.extra_config.strip() + "\n"

    def start(self) -> PrivateMosquitto:
        binary = require_binaries("mosquitto")["mosquitto"]
        self._lock = _DirLock(self.directory)
        if not self.port:
            self.port = free_port()
        data_dir = self.directory / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            # As root mosquitto switches to the "mosquitto" user, which then must be able to
            # write its persistence folder; when it cannot reach it, stay root instead.
            self._run_as = "root"
            if _user_exists("mosquitto"):
                shutil.chown(data_dir, "mosquitto")
                if _user_can_use("mosquitto", data_dir):
                    self._run_as = "mosquitto"
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self.config_text())
        self._spawn(
            "mosquitto",
            [binary, "-c", str(conf)],
            self.directory,
            self.port,
            lambda: tcp_open("127.0.0.1", self.port, 0.2),
        )
        return self

    def stop(self) -> None:
        self._stop_child("mosquitto", self.url)


@dataclass
class PrivateNats(_PrivateService):
    """A ``nats-server`` with JetStream on 127.0.0.1:``port``, its store and log in
    ``directory`` (for the engine workers: ``routewatch gateway`` / ``worker``)."""

    directory: Path
    port: int = 0
    #: server configuration file text (e.g. subject ``mappings``); none by default
    config: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock: _DirLock | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> PrivateNats:
        binary = require_binaries("nats-server")["nats-server"]
        self._lock = _DirLock(self.directory)
        if not self.port:
            self.port = free_port()
        cmd = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        cmd += ["-sd", str(self.directory / "jetstream")]
        if self.config:
            conf = self.directory / "nats.conf"
            conf.write_text(self.config)
            cmd += ["-c", str(conf)]
        self._spawn(
            "nats-server", cmd, self.directory, self.port, lambda: nats_reachable(self.url, 0.2)
        )
        return self

    def stop(self) -> None:
        self._stop_child("nats-server", self.url)


def nats_reachable(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the first server of ``url`` (comma-separated list) is a NATS server with
    JetStream: it greets every connection with an ``INFO {...}`` line saying so."""
    first = urlsplit(url.split(",")[0].strip())
    try:
        with socket.create_connection(
            (first.hostname or "127.0.0.1", first.port or 4222), timeout=timeout_s
        ) as sock:
            sock.settimeout(timeout_s)
            greeting = b""
            while not greeting.endswith(b"\r\n") and len(greeting) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                greeting += chunk
    except OSError:
        return False
    if not greeting.startswith(b"INFO "):
        return False
    try:
        info = json.loads(greeting[5:])
    except ValueError:
        return False
    return bool(info.get("jetstream"))


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _as_pg_user(cmd: list[str]) -> list[str]:
    """``cmd`` run as the unprivileged postgres user when we are root (PostgreSQL refuses
    to run as root)."""
    if not _is_root():
        return cmd
    if not _user_exists(PG_SYSTEM_USER):
        raise ServiceError(
            f"running as root needs the '{PG_SYSTEM_USER}' system user to own the private "
            "cluster; install the postgresql package (it creates the user)"
        )
    return ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd]


def _user_can_use(user: str, path: Path) -> bool:
    """Whether system ``user`` can reach and write ``path`` (a root-only parent such as
    /root or pytest's 0700 temp folder blocks it). Only meaningful when we are root."""
    probe = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-w", str(path), "-a", "-x", str(path)],
        check=False,
    )
    return probe.returncode == 0


@dataclass
class PrivatePostgres(_PrivateService):
    """A PostgreSQL cluster in ``directory/data`` listening on 127.0.0.1:``port`` (trust
    auth, superuser ``postgres``), its unix socket in ``directory/run``. The data survives
    a stop, so the next start reuses it; if the postgres user cannot reach ``directory``
    (root-only parent folders) a throw-away folder under the system temp dir is used."""

    directory: Path
    port: int = 0
    #: preload TimescaleDB when the machine has it (so new databases get it)
    preload_timescaledb: bool = True
    _lock: _DirLock | None = field(default=None, init=False, repr=False)
    _home: Path | None = field(default=None, init=False, repr=False)
    _throwaway: bool = field(default=False, init=False, repr=False)
    _socket_dir: Path | None = field(default=None, init=False, repr=False)
    _temp_socket_dir: bool = field(default=False, init=False, repr=False)
    _bins: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        assert self._home is not None, "not started"
        return self._home / "data"

    def _prepare_home(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        home = self.directory.resolve()
        if _is_root():
            shutil.chown(home, PG_SYSTEM_USER)
            if not _user_can_use(PG_SYSTEM_USER, home):
                home = Path(tempfile.mkdtemp(prefix="routewatch-pg-"))
                shutil.chown(home, PG_SYSTEM_USER)
                self._throwaway = True
                log.info("postgres user cannot reach %s; using %s", self.directory, home)
        socket_dir = home / "run"
        if len(str(socket_dir)) > _MAX_SOCKET_DIR_LEN:
            socket_dir = Path(tempfile.mkdtemp(prefix="rw-pgsock-"))
            self._temp_socket_dir = True
        socket_dir.mkdir(exist_ok=True)
        if _is_root():
            shutil.chown(socket_dir, PG_SYSTEM_USER)
        self._socket_dir = socket_dir
        return home

    def _pg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = _as_pg_user([self._bins[args[0]], *args[1:]])
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}")
        return result

    def start(self) -> PrivatePostgres:
        self._bins = require_binaries("initdb", "pg_ctl")
        self._lock = _DirLock(self.directory)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._home = self._prepare_home()
        data = self.data_dir
        if not (data / "PG_VERSION").exists():
            t0 = time.monotonic()
            self._pg(
                "initdb",
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            )
            log.info(
                "initialised private PostgreSQL cluster",
                extra={"dir": str(data), "duration_s": round(time.monotonic() - t0, 2)},
            )
        elif self._pg("pg_ctl", "status", "-D", str(data), check=False).returncode == 0:
            # We hold the directory lock, so a running server is a leftover of a killed run.
            log.warning("stopping a stale private PostgreSQL in %s", data)
            self._pg("pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w")
        if not self.port:
            self.port = free_port()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self._socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        if self.preload_timescaledb and timescaledb_installed(self._bins["pg_ctl"]):
            # Preloaded, so migrations put the database on TimescaleDB; no telemetry calls
            # home from a private cluster.
            options += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        self._pg(
            "pg_ctl",
            "start",
            "-D",
            str(data),
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "-l",
            str(self._log_path()),
            "-o",
            options,
        )
        log.info("started private PostgreSQL", extra={"url": self.url, "dir": str(data)})

    def _log_path(self) -> Path:
        assert self._home is not None
        return self._home / "postgres.log"

    def stop(self) -> None:
        if self._home is not None and (self.data_dir / "postmaster.pid").exists():
            self._pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", check=False)
            log.info("stopped private PostgreSQL", extra={"url": self.url})
        if self._throwaway and self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
        if self._temp_socket_dir and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        self._home = None
        self._release_lock()


# --------------------------------------------------------------------------- composition


@dataclass(frozen=True)
class Services:
    """Where the services are, and which ones this process started."""

    database_url: str
    mqtt_url: str
    started: tuple[str, ...] = ()


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # KeyboardInterrupt rather than SystemExit: pytest and the CLI both treat it as
    # "stop now, but run teardown", which is what stops private services.
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs, so ``finally``/``with``
    cleanup (stopping private services) happens; a no-op outside the main thread."""

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ensure_postgres(settings: Settings) -> Iterator[str]:
    """Yield a URL for the configured PostgreSQL (same database name) — the configured
    server when it answers, else a private cluster under ``state_dir/postgres``, stopped on
    exit. The database itself may still need ``ensure_database``."""
    if postgres_reachable(settings.database_url):
        log.info("reusing PostgreSQL", extra={"url": redact(settings.database_url)})
        yield settings.database_url
        return
    log.info(
        "PostgreSQL not reachable at %s; starting a private one", redact(settings.database_url)
    )
    with stop_on_sigterm(), PrivatePostgres(settings.state_dir / "postgres") as pg:
        dbname = str(conninfo_to_dict(settings.database_url).get("dbname") or "postgres")
        yield with_dbname(pg.url, dbname)


@contextlib.contextmanager
def ensure_timescaledb(server_url: str, state_dir: Path) -> Iterator[str | None]:
    """Yield a PostgreSQL server URL whose new databases get TimescaleDB: ``server_url``
    when it preloads the extension, else a private cluster under ``state_dir`` (which
    preloads it) when this machine has it installed; None when the machine has none."""
    from store.migrate import timescaledb_state

    with psycopg.connect(with_dbname(server_url, "postgres")) as conn:
        state = timescaledb_state(conn)
    if state.available and state.preloaded:
        yield server_url
        return
    pg_ctl = find_binary("pg_ctl")
    if pg_ctl is None or not timescaledb_installed(pg_ctl):
        yield None
        return
    with stop_on_sigterm(), PrivatePostgres(state_dir) as server:
        yield server.url


@contextlib.contextmanager
def ensure_mosquitto(settings: Settings) -> Iterator[str]:
    """Yield the URL of an MQTT broker — the configured one when it answers, else a
    private mosquitto under ``state_dir/mosquitto``, stopped on exit."""
    if mqtt_reachable(settings.mqtt_url, settings=settings):
        log.info("reusing Mosquitto", extra={"url": redact(settings.mqtt_url)})
        yield settings.mqtt_url
        return
    log.info(
        "MQTT broker not reachable at %s; starting a private mosquitto", redact(settings.mqtt_url)
    )
    with stop_on_sigterm(), PrivateMosquitto(settings.state_dir / "mosquitto") as broker:
        yield broker.url


@contextlib.contextmanager
def ensure_nats(settings: Settings) -> Iterator[str]:
    """Yield the URL of a NATS server with JetStream — the configured one when it answers,
    else a private nats-server under ``state_dir/nats``, stopped on exit."""
    if nats_reachable(settings.nats_url):
        log.info("reusing NATS", extra={"url": redact(settings.nats_url)})
        yield settings.nats_url
        return
    log.info(
        "NATS with JetStream not reachable at %s; starting a private nats-server",
        redact(settings.nats_url),
    )
    with stop_on_sigterm(), PrivateNats(settings.state_dir / "nats") as server:
        yield server.url


@contextlib.contextmanager
def ensure_services(settings: Settings) -> Iterator[Services]:
    """Both services (see ``ensure_postgres`` / ``ensure_mosquitto``); private instances
    started here are stopped on exit, also on SIGTERM."""
    with (
        stop_on_sigterm(),
        ensure_postgres(settings) as database_url,
        ensure_mosquitto(settings) as mqtt_url,
    ):
        started = tuple(
            name
            for name, url, configured in (
                ("postgresql", database_url, settings.database_url),
                ("mosquitto", mqtt_url, settings.mqtt_url),
            )
            if url != configured
        )
        yield Services(database_url, mqtt_url, started)


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def main(argv: list[str] | None = None) -> int:
    """``python -m routewatch.services [--] COMMAND ...``: run COMMAND with the services up
    (reused or private) and ``ROUTEWATCH_DATABASE_URL`` / ``ROUTEWATCH_MQTT_URL`` pointing
    at them; private ones are stopped afterwards. Used by ``make bench``."""
    import argparse

    from routewatch.logging import setup_logging

    parser = argparse.ArgumentParser(prog="python -m routewatch.services")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command and its arguments")
    command = parser.parse_args(argv).command
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("no command given")
    settings = Settings()
    setup_logging(settings.log_level, json=settings.log_json)
    try:
        with ensure_services(settings) as svc:
            env = {
                **os.environ,
                "ROUTEWATCH_DATABASE_URL": ensure_database(svc.database_url),
                "ROUTEWATCH_MQTT_URL": svc.mqtt_url,
            }
            return subprocess.run(command, env=env, check=False).returncode
    except ServiceError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
