"""A throwaway PostgreSQL cluster in a temp folder, for tests and benchmarks.

    with Cluster.start() as cluster:
        url = cluster.create_database("mlpulse")   # postgresql://postgres@127.0.0.1:PORT/mlpulse

It runs Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, or PG_BINDIR)
with `initdb` + `pg_ctl` in a fresh folder, trust authentication on 127.0.0.1 only,
fsync off (it is thrown away). The server refuses to run as root, so as root the folder
belongs to the `postgres` user and the binaries run through `runuser`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_OS_USER = "postgres"


class ClusterError(RuntimeError):
    """The PostgreSQL binaries are missing or the server did not start."""


def bin_dir() -> Path:
    """Where initdb/pg_ctl are: PG_BINDIR, else the newest Debian install."""
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).parent
    raise ClusterError(
        "PostgreSQL server binaries not found: apt-get install postgresql (or set PG_BINDIR)"
    )


def _version_key(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway server; `stop()` (or leaving the `with`) removes it."""

    folder: Path
    port: int

    @classmethod
    def start(cls, timeout: float = 60.0) -> Cluster:
        bindir = bin_dir()
        folder = Path(tempfile.mkdtemp(prefix="mlpulse-pg-"))
        data = folder / "data"
        data.mkdir()
        as_root = os.geteuid() == 0
        if as_root:
            shutil.chown(folder, _OS_USER)
            shutil.chown(data, _OS_USER)
        os.chmod(folder, 0o755)  # noqa: S103 - the server user must reach its folder
        port = _free_port()
        cluster = cls(folder, port)
        cluster._run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync"],
        )  # fmt: skip
        with open(data / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write(
                f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{folder}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 128MB\n"
            )
        cluster._run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
             "-t", str(int(timeout)), "start"],
        )  # fmt: skip
        return cluster

    def _run(self, argv: list[str]) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", _OS_USER, "--", *argv]
        done = subprocess.run(  # noqa: S603 - our own argv, no shell
            argv, capture_output=True, text=True, check=False, cwd=self.folder
        )
        if done.returncode != 0:
            cause = done.stderr.strip() or done.stdout.strip()
            raise ClusterError(f"{Path(argv[-1]).name} failed: {cause}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """Create a database (dropping one of that name) and return its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(ClusterError):
            data = str(self.folder / "data")
            self._run([str(bin_dir() / "pg_ctl"), "-D", data, "-m", "immediate", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop the server (fast) and start it again after `down_for` seconds."""
        data = str(self.folder / "data")
        self._run([str(bin_dir() / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"])
        time.sleep(down_for)
        self._run([str(bin_dir() / "pg_ctl"), "-D", data, "-l", str(self.folder / "server.log"),
                   "-w", "start"])  # fmt: skip

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running() -> Iterator[Cluster]:
    cluster = Cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
