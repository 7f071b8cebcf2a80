"""The README, executed: every fenced ``bash`` and ``python`` block runs against a live platform.

The platform is started the way ``make run`` starts it (``.venv/bin/mlp server`` on its
embedded default) in a scratch directory with its own ``HOME``, so ``~/.config/ml-platform``
and ``./.mlp`` are the test's own. The blocks run in document order: the ``bash`` blocks in ONE
shell (variables such as ``KEY`` and ``JOB`` carry over, as in a reader's terminal), every
``python`` block with the platform's interpreter. ``curl`` fails on any HTTP error status, so a
snippet that answers 4xx fails the test instead of printing an error body nobody reads.

The only rewriting is of the ports: the README names the defaults (8000, 50051, 8081) and the
test's server listens on free ports, so those three addresses are replaced. A block may be
left out only by an ``<!-- readme-test: skip -->`` comment right above it, and only when every
command in it starts a long-running server (``make run``, ``mlp server``, ``mlp serve``) or is
``make test`` itself; anything else marked so fails the test.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.ports import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent

FENCE = re.compile(
    r"(?P<marker><!--\s*readme-test:\s*(?P<directive>[a-z-]+)\s*-->\s*\n)?"
    r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```\s*$",
    re.MULTILINE | re.DOTALL,
)
SERVER_COMMAND = re.compile(r"^\s*(make run|make test|(\S*/)?mlp (server|serve))\b")
DEFAULT_PORTS = {"8000": "rest", "50051": "grpc", "8081": "serving_rest"}


@dataclass(frozen=True)
class Block:
    index: int
    lang: str
    body: str
    line: int
    skip: bool


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for i, match in enumerate(FENCE.finditer(text)):
        directive = match.group("directive")
        if directive not in (None, "skip"):
            raise AssertionError(f"unknown readme-test directive {directive!r}")
        blocks.append(
            Block(
                index=i,
                lang=match.group("lang"),
                body=match.group("body"),
                line=text.count("\n", 0, match.start("body")) + 1,
                skip=directive == "skip",
            )
        )
    return blocks


def _commands(body: str) -> list[str]:
    """The block's commands: non-empty lines that are not comments or continuations."""
    lines = [
        line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    commands, continued = [], False
    for line in lines:
        if not continued:
            commands.append(line)
        continued = line.rstrip().endswith("\\")
    return commands


def test_skip_markers_only_cover_long_running_servers() -> None:
    blocks = readme_blocks(README.read_text())
    assert any(b.lang == "bash" for b in blocks) and any(b.lang == "python" for b in blocks)
    for block in blocks:
        if block.skip:
            bad = [c for c in _commands(block.body) if not SERVER_COMMAND.match(c)]
            assert not bad, f"README line {block.line}: skipped block runs more than servers: {bad}"
        else:
            assert block.lang in ("bash", "python", ""), (
                f"README line {block.line}: a {block.lang!r} block is neither run nor skipped"
            )


@dataclass
class LiveReadme:
    workdir: Path
    env: dict[str, str]
    ports: dict[str, int]

    def localize(self, body: str) -> str:
        for default, name in DEFAULT_PORTS.items():
            body = body.replace(f"127.0.0.1:{default}", f"127.0.0.1:{self.ports[name]}")
        return body


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveReadme]:
    root = tmp_path_factory.mktemp("readme")
    home, workdir = root / "home", root / "work"
    home.mkdir()
    workdir.mkdir()
    # The reader's checkout: the examples and the installed virtualenv, nothing else.
    (workdir / "examples").symlink_to(REPO / "examples")
    (workdir / ".venv").symlink_to(VENV_BIN.parent)
    ports = {"rest": free_port(), "grpc": free_port(), "serving_rest": free_port()}
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "ML_PLATFORM_PORT": str(ports["rest"]),
        "ML_PLATFORM_GRPC_PORT": str(ports["grpc"]),
        "ML_PLATFORM_SERVING_REST_PORT": str(ports["serving_rest"]),
    }
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(
        [str(VENV_BIN / "mlp"), "server"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        credentials = home / ".config" / "ml-platform" / "credentials.json"
        while True:
            if server.poll() is not None:
                raise AssertionError(f"mlp server exited: {(root / 'server.log').read_text()}")
            try:
                up = httpx.get(f"http://127.0.0.1:{ports['rest']}/healthz", timeout=1)
                if up.status_code == 200 and credentials.exists():
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("mlp server did not come up within 60 s")
            time.sleep(0.2)
        yield LiveReadme(workdir=workdir, env=env, ports=ports)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


CURL_FAILS_ON_HTTP_ERRORS = 'curl() { command curl --fail-with-body "$@"; }\n'


BLOCK_TIMEOUT_SECONDS = 300


@pytest.mark.timeout(1200)
def test_every_block_runs_as_written(live: LiveReadme) -> None:
    blocks = [b for b in readme_blocks(README.read_text()) if not b.skip and b.lang]
    assert shutil.which("curl"), "the README's shell blocks need curl"
    shell = subprocess.Popen(
        ["bash", "--noprofile", "--norc"],
        cwd=live.workdir,
        env=live.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert shell.stdin is not None and shell.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, args=(shell.stdout,), daemon=True).start()
    shell.stdin.write("set -euo pipefail\n" + CURL_FAILS_ON_HTTP_ERRORS)
    try:
        for block in blocks:
            suffix = "sh" if block.lang == "bash" else "py"
            path = live.workdir / f"readme_block_{block.index}.{suffix}"
            path.write_text(live.localize(block.body))
            command = f"python {path}" if block.lang == "python" else f"source {path}"
            done = f"__readme_block_{block.index}_done__"
            shell.stdin.write(f"{command}\necho {done}\n")
            shell.stdin.flush()
            output: list[str] = []
            deadline = time.monotonic() + BLOCK_TIMEOUT_SECONDS
            where = f"README block at line {block.line} ({block.lang})"
            while True:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise AssertionError(
                        f"{where} did not finish in {BLOCK_TIMEOUT_SECONDS} s:\n"
                        + "".join(output)[-4000:]
                    ) from None
                if line is None:
                    shell.wait(timeout=30)
                    raise AssertionError(
                        f"{where} failed (exit {shell.returncode}):\n{''.join(output)[-4000:]}"
                    )
                if line.rstrip("\n").endswith(done):  # output without a final newline
                    output.append(line.rstrip("\n").removesuffix(done))
                    break
                output.append(line)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait(timeout=30)
