"""A real `octopus-cards serve` in a subprocess, on 127.0.0.1 and a free port, for the e2e tests.

Everything here is bounded by a timeout, and every process started is stopped (SIGTERM, then
SIGKILL to its own process group) when the server is stopped.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
HTTP_TIMEOUT = 10.0


def console_script(name):
    """A console script installed with the interpreter running the tests (octopus-cards, st, ...)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise RuntimeError(f"the {name} console script is not installed (pip install -e '.[test]')")
    return found


def executable():
    """The `octopus-cards` console script of the interpreter running the tests."""
    return console_script("octopus-cards")


def server_env(settings):
    """The process environment (PATH, HOME, ...) without any OCTOPUS_* setting of the caller's
    shell, plus `settings`; a value of None removes that variable."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OCTOPUS_")}
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(settings, *args, cwd=None, timeout=CLI_TIMEOUT):
    """Run `octopus-cards <args>` with the given settings; the completed process (text)."""
    return subprocess.run(
        [executable(), *args],
        env=server_env(settings),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_json(settings, *args, cwd=None):
    """Run a CLI command that prints JSON, insist it succeeds, return the parsed output."""
    done = run_cli(settings, *args, cwd=cwd)
    assert done.returncode == 0, f"octopus-cards {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


def import_new_products(settings, directory, kind, entries):
    """`octopus-cards catalog import` of a file, written in `directory`, of `entries` of one kind
    ("esim", "topups", ...); every entry must be created."""
    catalogue = directory / f"{kind}.json"
    catalogue.write_text(json.dumps({kind: entries}))
    imported = cli_json(settings, "catalog", "import", str(catalogue), "--json")
    assert imported[kind] == {"created": len(entries), "updated": 0}, imported


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_client(**kwargs):
    """An httpx client that never consults proxy environment variables (traffic stays local)."""
    kwargs.setdefault("timeout", HTTP_TIMEOUT)
    return httpx.Client(trust_env=False, **kwargs)


class ServerError(RuntimeError):
    pass


class LiveServer:
    """`octopus-cards serve --host 127.0.0.1 --port <free> [extra args]` with `settings`.

    Output goes to files in `log_dir`: `stdout` and `stderr` read them back (complete once stopped).
    Use as a context manager, or call start() / stop() (stop() is safe to call twice).
    """

    def __init__(self, settings, log_dir, *args, workers=1, cwd=None, name="server"):
        self.settings = dict(settings)
        self.args = list(args)
        self.workers = workers
        if workers != 1:
            self.args += ["--workers", str(workers)]
        self.log_dir = Path(log_dir)
        self.cwd = cwd
        self.name = name
        self.port = None
        self.process = None
        self._files = []
        self._runs = 0
        self._stdout_path = self._stderr_path = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout=STARTUP_TIMEOUT):
        """Start and wait until every worker has started and the server answers HTTP."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self):
        """Start the process without waiting (see wait_ready): lets several servers boot at once."""
        if self.process is not None:
            raise ServerError(f"{self.name} is already running")
        self._runs += 1
        self.port = free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.name}-{self._runs}"
        self._stdout_path = self.log_dir / f"{stem}.stdout"
        self._stderr_path = self.log_dir / f"{stem}.stderr"
        stdout = open(self._stdout_path, "wb")
        stderr = open(self._stderr_path, "wb")
        self._files = [stdout, stderr]
        try:
            self.process = subprocess.Popen(
                [executable(), "serve", "--host", HOST, "--port", str(self.port), *self.args],
                env=server_env(self.settings),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group: workers are stopped with it
            )
        except BaseException:
            self._close_files()
            raise
        return self

    def wait_ready(self, timeout=STARTUP_TIMEOUT):
        deadline = time.monotonic() + timeout
        with http_client(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    self.stop()
                    raise ServerError(f"{self.name} exited with {code} during start-up:\n{self.stderr}")
                if self._workers_started() and self._answers(client):
                    return self
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerError(f"{self.name} did not answer within {timeout} s:\n{self.stderr}")
                time.sleep(0.05)

    def _workers_started(self):
        return self.stderr.count("Application startup complete.") >= self.workers

    def _answers(self, client):
        try:
            return client.get(self.url("/openapi.json")).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM (uvicorn shuts down gracefully, workers included); SIGKILL to the group after
        `timeout`. Returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._kill_group(process.pid)
                    process.wait(timeout=timeout)
            # Workers left behind by a supervisor that died are in the same group.
            self._kill_group(process.pid)
            return process.returncode
        finally:
            self._close_files()

    @staticmethod
    def _kill_group(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _close_files(self):
        for handle in self._files:
            handle.close()
        self._files = []

    def restart(self, timeout=STARTUP_TIMEOUT):
        self.stop()
        return self.start(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- access ------------------------------------------------------------------------------

    @property
    def base_url(self):
        return f"http://{HOST}:{self.port}"

    def url(self, path):
        return self.base_url + path

    def client(self, **kwargs):
        """An httpx client bound to this server (a fresh connection pool)."""
        return http_client(base_url=self.base_url, **kwargs)

    @property
    def pid(self):
        return self.process.pid if self.process else None

    @property
    def stdout(self):
        """Everything the current (or last) run wrote to stdout."""
        return self._read(self._stdout_path)

    @property
    def stderr(self):
        return self._read(self._stderr_path)

    @staticmethod
    def _read(path):
        if path is None or not path.exists():
            return ""
        return path.read_bytes().decode("utf-8", "replace")

    # -- which process serves a connection (Linux /proc) -------------------------------------

    def process_tree(self):
        """The pids of the server process and its descendants."""
        if self.process is None:
            return []
        pids, frontier = [self.process.pid], [self.process.pid]
        while frontier:
            parent = frontier.pop()
            for task in Path(f"/proc/{parent}/task").glob("*/children"):
                try:
                    children = [int(pid) for pid in task.read_text().split()]
                except OSError:
                    continue
                for child in children:
                    if child not in pids:
                        pids.append(child)
                        frontier.append(child)
        return pids

    def serving_pid(self, client_port):
        """The pid of the server process holding the accepted end of the TCP connection whose
        client side is 127.0.0.1:`client_port`; None if not found (the connection is gone)."""
        inode = _server_socket_inode(self.port, client_port)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for pid in self.process_tree():
            for fd in Path(f"/proc/{pid}/fd").glob("*"):
                try:
                    if os.readlink(fd) == target:
                        return pid
                except OSError:
                    continue
        return None


def _hex_endpoint(port):
    # /proc/net/tcp writes 127.0.0.1 as the little-endian word 0100007F.
    return f"0100007F:{port:04X}"


def _server_socket_inode(server_port, client_port):
    local, remote = _hex_endpoint(server_port), _hex_endpoint(client_port)
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            # State 01 is ESTABLISHED; a TIME_WAIT leftover of an earlier connection has inode 0.
            if fields[1] == local and fields[2] == remote and fields[3] == "01" and fields[9] != "0":
                return int(fields[9])
    return None


def client_port_of(response):
    """The local port of the connection an httpx response came over."""
    stream = response.extensions["network_stream"]
    return stream.get_extra_info("client_addr")[1]
