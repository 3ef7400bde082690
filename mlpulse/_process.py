"""Child processes for the demo: start, wait until healthy, stop the whole process group."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

log = logging.getLogger("mlpulse.demo")


class ManagedProcess:
    """One child process in its own session, its output in a log file.

    Its own session means a stop reaches every process it started (uvicorn workers,
    threads that fork), so nothing is left behind after Ctrl-C.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._env = {**os.environ, **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the process, appending its output to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - argv is built by us, not a shell
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )
        log.debug("started %s (pid %s): %s", self.name, self._proc.pid, " ".join(self.argv))

    def exit_code(self) -> int | None:
        """The exit code if it has ended, else None."""
        return None if self._proc is None else self._proc.poll()

    def wait_healthy(
        self,
        url: str,
        *,
        timeout_s: float,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        """Poll `url` until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {code} while starting; see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            if progress:
                progress(time.monotonic() - started)
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not healthy at {url} after {timeout_s:.0f} s")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
        if self._proc is None or self._proc.poll() is not None:
            self._reap_group()
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, grace_s)
            self._signal_group(signal.SIGKILL)
            self._proc.wait(timeout=5)
        self._reap_group()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _reap_group(self) -> None:
        # Grandchildren that outlived their parent still sit in the group: end them too.
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
