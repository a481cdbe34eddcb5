"""No request can exhaust the web process: 400 MB bodies, chunked or multipart, against `autodev web` run as a
user runs it (its own process, uvicorn on 127.0.0.1), measuring that process's peak RSS from /proc."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.github_app.conftest import private_key as private_key

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_BYTES = 400 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)  # one buffer sent again and again: the test never holds the upload
MAX_RISE_BYTES = 20 * 1024 * 1024

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


class PeakRss:
    """The process's RSS peak over a block: the kernel's high-water mark, reset at the start (clear_refs 5),
    and, where that reset is not allowed, a 5 ms poll of the current RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.polled = 0
        self.baseline = 0
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, LookupError):
                self.polled = max(self.polled, status_kb(self.pid, "VmRSS"))
            time.sleep(0.005)

    @contextlib.contextmanager
    def measure(self) -> Iterator[PeakRss]:
        self.hwm_reset = False
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        self.baseline = self.polled = status_kb(self.pid, "VmRSS")
        poller = threading.Thread(target=self._poll, daemon=True)
        poller.start()
        try:
            yield self
        finally:
            self._stop.set()
            poller.join()
            self.peak = max(self.polled, status_kb(self.pid, "VmHWM") if self.hwm_reset else 0)

    @property
    def rise_bytes(self) -> int:
        return (self.peak - self.baseline) * 1024


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, private_key: str) -> Iterator[tuple[str, int]]:
    """`autodev web` in a process of its own: GitHub and Slack configured, Slack's API unreachable."""
    folder = tmp_path_factory.mktemp("web")
    port = free_port()
    pem = folder / "app.pem"
    pem.write_text(private_key)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "REDIS_URL")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(folder / "data"),
        "GITHUB_APP_ID": "4242",
        "GITHUB_PRIVATE_KEY": str(pem),
        "GITHUB_WEBHOOK_SECRET": "memory-test-secret",
        "GITHUB_APP_SLUG": "autodev-test",
        "GITHUB_API_URL": f"http://127.0.0.1:{free_port()}",
        "SLACK_BOT_TOKEN": "xoxb-memory-test",
        "SLACK_SIGNING_SECRET": "memory-test-signing",
        "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
    }
    log_path = folder / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "autodev", "web", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"autodev web exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"autodev web did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Upload:
    """400 MB from a generator, counting what the server let it send."""

    def __init__(self, multipart_boundary: str | None = None) -> None:
        self.boundary = multipart_boundary
        self.sent = 0

    async def body(self) -> AsyncIterator[bytes]:
        if self.boundary:
            yield (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="token"; filename="b"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        for _ in range(UPLOAD_BYTES // len(CHUNK)):
            self.sent += len(CHUNK)
            yield CHUNK
        if self.boundary:
            yield f"\r\n--{self.boundary}--\r\n".encode()


CASES = [
    # (path, content type, multipart?, expected status)
    ("/slack/events", "application/x-www-form-urlencoded", False, 413),
    ("/github/webhooks", "application/json", False, 413),
    ("/jobs/login", "application/x-www-form-urlencoded", False, 413),
    ("/jobs/login", None, True, 415),
    ("/jobs/0123456789abcdef0123456789abcdef/cancel", None, True, 415),
    ("/jobs/0123456789abcdef0123456789abcdef/retry", "application/x-www-form-urlencoded", False, 413),
]


@pytest.mark.parametrize(("path", "content_type", "multipart", "status"), CASES)
async def test_a_400_mb_upload_raises_the_web_process_rss_by_less_than_20_mb(
    web: tuple[str, int], path: str, content_type: str | None, multipart: bool, status: int
) -> None:
    """Regression: a multipart upload into a form field took the web process from 60 MB to 2.3 GB, and an
    unsigned chunked body to /slack/events peaked at 945 MB, before any refusal."""
    base, pid = web
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        # Warm: every route's code loaded and run once before the measure.
        for warm in ("/", "/readyz", "/jobs"):
            await http.get(warm)
        await http.post("/jobs/login", data={"token": "nope"})
        await http.post("/slack/events", content=b"command=%2Forchestrate")
        await http.post("/github/webhooks", content=b"{}", headers={"X-Hub-Signature-256": "sha256=00"})
        boundary = "autodev-memory-test"
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}" if multipart else content_type}
        upload = Upload(boundary if multipart else None)
        answered: int | None = None
        # The refusal closes the connection; with the client's unread bytes still arriving, the kernel may
        # reset it before the client reads the answer (servers that "linger" avoid that).
        reset = contextlib.suppress(httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
        with PeakRss(pid).measure() as rss, reset:
            answered = (await http.post(path, content=upload.body(), headers=headers)).status_code
    assert answered in (status, None)
    assert rss.rise_bytes < MAX_RISE_BYTES, f"RSS rose {rss.rise_bytes / 2**20:.1f} MB"
    assert upload.sent < UPLOAD_BYTES // 4, f"the server read on to {upload.sent / 2**20:.0f} MB"


async def test_a_declared_400_mb_body_is_refused_before_it_is_read(web: tuple[str, int]) -> None:
    base, pid = web
    host, port = base.removeprefix("http://").split(":")
    with PeakRss(pid).measure() as rss, socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {UPLOAD_BYTES}\r\n\r\n"
        )
        sock.sendall(head.encode() + CHUNK[:1024])  # then nothing: the answer must not wait for the rest
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "connection: close" in answer.lower()
    assert rss.rise_bytes < MAX_RISE_BYTES
