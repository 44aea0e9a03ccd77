"""Restate, side by side with Kadence: installs the peer, serves the four scenarios, measures them.

    python -m bench.peers.restate_bench [--workflows 500] [--orders 100] ...   (the driver's options)

Installs once into ~/.cache/kadence/peers/restate (override with KADENCE_PEERS_DIR): the server
from npm (`@restatedev/restate-server`, a native binary in a platform package) and a virtualenv
with the Python SDK (`restate-sdk`), hypercorn (its ASGI server) and httpx (the driver's HTTP
client), at the pinned versions below. Then, per run: a fresh server on free loopback ports with
its data in a temporary folder, the services of `restate_app.py` under hypercorn, the deployment
registered through the admin API, and `restate_driver.py`, which prints one JSON line per scenario
(`"system": "restate"`). Nothing of Restate is imported by Kadence.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

SERVER_VERSION = "1.7.12"
SDK_VERSION = "1.3.0"
HERE = Path(__file__).resolve().parent


def peers_dir() -> Path:
    return Path(os.environ.get("KADENCE_PEERS_DIR", Path.home() / ".cache" / "kadence" / "peers")) / "restate"


def install() -> tuple[Path, Path]:
    """(restate-server binary, the venv's python), installing what is missing."""
    root = peers_dir()
    root.mkdir(parents=True, exist_ok=True)
    server = root / "node_modules" / ".bin" / "restate-server"
    if not server.exists():
        print(f"installing @restatedev/restate-server@{SERVER_VERSION} into {root}", file=sys.stderr)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(root),
                f"@restatedev/restate-server@{SERVER_VERSION}",
            ],
            check=True,
        )
    python = root / "venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    probe = subprocess.run([str(python), "-c", "import restate, hypercorn, httpx"], capture_output=True)
    if probe.returncode:
        print(
            f"installing restate-sdk=={SDK_VERSION}, hypercorn, httpx into {root / 'venv'}", file=sys.stderr
        )
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"restate-sdk[serde]=={SDK_VERSION}",
                "hypercorn",
                "httpx",
            ],
            check=True,
        )
    return server, python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {seconds:.0f}s") from None
            time.sleep(0.2)


def register(admin: str, service_url: str) -> None:
    body = json.dumps({"uri": service_url}).encode()
    request = urllib.request.Request(f"{admin}/deployments", body, {"content-type": "application/json"})
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:  # the service may still be starting
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"registering {service_url}: {exc}: {exc.read().decode(errors='replace')}"
                ) from None
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args, driver_args = ap.parse_known_args(argv)
    server_bin, python = install()
    with ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kadence-restate-")))
        ingress, admin, node, svc = free_port(), free_port(), free_port(), free_port()
        env = dict(
            os.environ,
            RESTATE_BASE_DIR=str(data),
            RESTATE_INGRESS__BIND_ADDRESS=f"127.0.0.1:{ingress}",
            RESTATE_ADMIN__BIND_ADDRESS=f"127.0.0.1:{admin}",
            RESTATE_BIND_ADDRESS=f"127.0.0.1:{node}",
            RESTATE_LISTEN_MODE="tcp",
            RESTATE_LOG_FILTER="warn",
        )
        log = (data / "server.log").open("w")
        server = subprocess.Popen(
            [str(server_bin), "--no-logo"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        stack.callback(_stop, server)
        service = subprocess.Popen(
            [
                str(python),
                "-m",
                "hypercorn",
                "restate_app:app",
                "--bind",
                f"127.0.0.1:{svc}",
                "--log-level",
                "warning",
            ],
            cwd=HERE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(_stop, service)
        wait_http(f"http://127.0.0.1:{admin}/health")
        wait_http(f"http://127.0.0.1:{ingress}/restate/health")
        register(f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{svc}")
        driver = [str(python), str(HERE / "restate_driver.py"), f"http://127.0.0.1:{ingress}"]
        code = subprocess.call(driver + ["--pids", f"{server.pid},{service.pid}", *driver_args])
        if code:
            log.flush()
            print((data / "server.log").read_text()[-4000:], file=sys.stderr)
        return code


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
    sys.exit(main())
