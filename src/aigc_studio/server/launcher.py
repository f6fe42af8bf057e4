"""``aigc serve`` as a child process on a free port: for load benchmarks, live-server tests and scripts.

::

    with start_server(workdir, "--model", "e2e-copy", env={"AIGC_WATERMARK__ENABLED": "false"}) as server:
        httpx.get(f"{server.url}/healthz")
    print(server.log_text())                    # what it printed, after it stopped

The child runs in ``directory`` (its ``var/`` holds keys and, unless the environment says otherwise, the SQLite
database ``directory/aigc.db``), writes its output to ``directory/server.log`` (a pipe nobody reads would fill
up and block the server's logging) and is stopped with SIGTERM, so it shuts down gracefully.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aigc_studio.errors import AigcError

# Importing torch and loading a model takes seconds; a busy two-core machine can need minutes.
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


class ServerStartError(AigcError):
    """The server exited or did not answer ``/healthz`` in time; the message ends with its last output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServerProcess:
    """A running ``aigc serve``: its process, base URL (``http://127.0.0.1:PORT``) and log file."""

    process: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self, last: int = 3000) -> str:
        """The last ``last`` characters the server printed."""
        return self.log_path.read_text(errors="replace")[-last:]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (a graceful shutdown that finishes running requests), then SIGKILL after ``timeout`` s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()


def start_server(directory: Path, *args: str, env: dict[str, str] | None = None,
                 timeout: float = START_TIMEOUT_S) -> ServerProcess:
    """Start ``aigc serve --host 127.0.0.1 --port FREE_PORT *args`` in ``directory`` and wait until it is healthy.

    Args:
        directory: the working directory (created if missing).
        args: more ``aigc serve`` arguments (``--model``, ``--auth``, ...).
        env: variables over this process's environment; ``AIGC_DATABASE_URL`` defaults to ``directory/aigc.db``
            and ``OMP_NUM_THREADS`` to 1 (the server shares the machine with its client).
        timeout: seconds to wait for ``/healthz``.

    Raises:
        ServerStartError: the process exited or stayed unhealthy; the message ends with its output.
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    child_env = {**os.environ, "AIGC_DATABASE_URL": f"sqlite:///{directory / 'aigc.db'}", "OMP_NUM_THREADS": "1",
                 **(env or {})}
    log_path = directory / "server.log"
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "aigc_studio.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=directory, env=child_env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"aigc serve exited with {process.returncode}:\n{server.log_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    server.stop()
    raise ServerStartError(f"aigc serve did not answer /healthz in {timeout:.0f} s:\n{server.log_text()}")
