"""The command sandbox, with real bwrap and real processes: what a hostile test command can reach and keep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import engine.workspace.sandbox as sandbox_module
import engine.workspace.sandbox_run as sandbox_run
from engine.workspace.sandbox import (
    BwrapRunner,
    CommandResult,
    CommandRunner,
    Limits,
    SandboxUnavailable,
    UnsandboxedRunner,
    bwrap_problem,
    make_runner,
    sandbox_env,
)
from engine.workspace.sandbox_fs import default_hidden, mount_args, mount_sources, toolchains
from tests.support.skip_policy import MISSING, skip_without

SECRET_NAME = "AUTODEV_PROBE_SECRET"

PROBE = r"""
import json, os, socket, subprocess

cfg = json.load(open("probe_config.json"))
reached = {}
leaks = set()
for pid in filter(str.isdigit, os.listdir("/proc")):
    for part in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{part}", "rb").read()
        except OSError:
            continue
        leaks.update(f"/proc/{pid}/{part}" for s in cfg["secrets"] if s.encode() in data)
reached["secrets"] = sorted(leaks)
files = []
for path in cfg["files"]:
    try:
        open(path, "rb").read(1)
        files.append(path)
    except OSError:
        pass
reached["files"] = files
reached["paths"] = [p for p in cfg["invisible"] if os.path.exists(p)]
try:
    reached["worker_home"] = sorted(os.listdir(cfg["worker_home"]))
except OSError:
    reached["worker_home"] = []

def connects(family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(address)
        return True
    except OSError:
        return False
    finally:
        s.close()

reached["tcp"] = connects(socket.AF_INET, ("127.0.0.1", cfg["port"]))
reached["unix"] = connects(socket.AF_UNIX, cfg["unix"])
if cfg["internet"]:
    try:
        socket.create_connection(("1.1.1.1", 53), 2).close()
        reached["internet"] = True
    except OSError:
        reached["internet"] = False

def writes(path, mode="w"):
    try:
        with open(path, mode) as f:
            f.write("" if mode == "a" else "#!/bin/sh\necho pwned\n")
        return True
    except OSError:
        return False

status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
reached["git_status"] = [status.returncode, status.stdout, status.stderr]
reached["dotgit_write"] = writes(".git", "a")

reached["mirror_write"] = writes(os.path.join(cfg["mirror"], "hooks", "post-checkout"))
reached["worktree_write"] = writes("written-by-probe.txt")
reached["pid_max_write"] = writes("/proc/sys/kernel/pid_max")
print("PROBE " + json.dumps(reached))
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@dataclass
class Site:
    """A fake autodev data dir with a job's worktree, plus the secrets and services the probe hunts for."""

    data: Path
    mirror: Path
    worktree: Path
    port: int
    unix: Path
    secrets: list[str]
    marker: str  # also the name of a symlink to sleep in the worktree: `./<marker> 1000` shows in cmdline

    @property
    def sleep(self) -> str:
        return f"./{self.marker}"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    data = tmp_path / "data"
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("hello\n")
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial")
    mirror = data / "mirrors" / "repo.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(mirror))
    git(tmp_path, "clone", "-q", "--bare", str(source), str(data / "mirrors" / "other.git"))
    worktree = data / "worktrees" / "job"
    git(mirror, "worktree", "add", "-q", "-b", "autodev/job", str(worktree), "main")
    for name, text in {"autodev.db": "jobs", "github-app.pem": "KEY", ".env": "OPENAI_API_KEY=sk"}.items():
        (data / name).write_text(text)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    unix = data / "redis.sock"
    unix_listener = socket.socket(socket.AF_UNIX)
    unix_listener.bind(str(unix))
    unix_listener.listen()
    env_secret, cmdline_token = f"env-secret-{uuid.uuid4().hex}", f"cmdline-token-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_NAME, env_secret)
    # A worker-like neighbour: secrets in its environment, a token on its command line (as git fetch had).
    marker = f"marker-{uuid.uuid4().hex}"
    (worktree / marker).symlink_to(Path(shutil.which("sleep") or "/bin/sleep").resolve())
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", cmdline_token], env=dict(os.environ)
    )
    try:
        yield Site(
            data, mirror, worktree, listener.getsockname()[1], unix, [env_secret, cmdline_token], marker
        )
    finally:
        worker.kill()
        worker.wait()
        listener.close()
        unix_listener.close()
        kill_survivors(marker)  # only ever needed when a test fails


@pytest.fixture
def bwrap(site: Site) -> BwrapRunner:
    problem = bwrap_problem()
    if problem:
        skip_without("a working bubblewrap", f"{problem}; apt-get install bubblewrap, user namespaces on")
    return BwrapRunner(hidden=[site.data])


async def probe(runner: CommandRunner, site: Site, *, internet: bool) -> dict:
    config = {
        "secrets": site.secrets, "port": site.port, "unix": str(site.unix), "internet": internet,
        "mirror": str(site.mirror), "worker_home": str(Path.home()),
        "files": [str(site.data / n) for n in ("autodev.db", "github-app.pem", ".env")] + ["/etc/shadow"],
        "invisible": [str(site.data / "mirrors" / "other.git"), "/run", "/var/run", str(Path(sys.prefix))],
    }  # fmt: skip
    (site.worktree / "probe.py").write_text(PROBE)
    (site.worktree / "probe_config.json").write_text(json.dumps(config))
    result = await runner.run(
        "python3 probe.py", site.worktree, env=sandbox_env(), readonly=[site.mirror],
        limits=Limits(timeout_s=60),
    )  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.startswith("PROBE ")]
    assert result.exit_code == 0 and lines, result.output
    return json.loads(lines[-1].removeprefix("PROBE "))


def survivors(marker: str) -> dict[int, str]:
    """Host processes whose command line holds `marker` (any that the sandbox failed to kill)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and int(pid) != os.getpid():
            found[int(pid)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def kill_survivors(marker: str) -> None:
    for pid in survivors(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def test_the_probe_reaches_nothing_from_inside_the_sandbox(bwrap: BwrapRunner, site: Site) -> None:
    """No secret in /proc, no data dir file, port, socket, internet or write to git's data; git works."""
    reached = await probe(bwrap, site, internet=True)
    assert reached["secrets"] == []
    assert reached["files"] == []
    assert reached["paths"] == []
    assert reached["tcp"] is False and reached["unix"] is False and reached["internet"] is False
    assert reached["mirror_write"] is False and reached["dotgit_write"] is False
    assert reached["pid_max_write"] is False
    assert reached["worktree_write"] is True
    code, stdout, stderr = reached["git_status"]
    assert code == 0, stderr
    assert "?? probe.py" in stdout
    home = Path.home().resolve()
    allowed = {p.relative_to(home).parts[0] for p, _ in toolchains(bwrap.hidden) if p and home in p.parents}
    assert set(reached["worker_home"]) <= allowed
    assert not (site.mirror / "hooks" / "post-checkout").exists()


async def test_the_same_probe_without_a_sandbox_reaches_everything(site: Site) -> None:
    """SANDBOX=none: the probe finds the secrets, the data dir's files and both services (so it can fail)."""
    reached = await probe(UnsandboxedRunner(), site, internet=False)
    assert {leak.rsplit("/", 1)[1] for leak in reached["secrets"]} == {"environ", "cmdline"}
    assert {Path(f).name for f in reached["files"]} >= {"autodev.db", "github-app.pem", ".env"}
    assert reached["tcp"] is True and reached["unix"] is True
    assert reached["mirror_write"] is True
    assert str(site.data / "mirrors" / "other.git") in reached["paths"]


async def test_pid_1_shows_no_host_variable_and_path_leaves_out_autodevs_venv(
    bwrap: BwrapRunner, site: Site
) -> None:
    """bwrap runs with an empty environment; the command's PATH holds no autodev venv or sys.prefix."""
    result = await bwrap.run(
        'tr "\\0" "\\n" < /proc/1/environ; echo "PATH=$PATH"', site.worktree, env=sandbox_env({"FOO": "bar"})
    )
    assert result.exit_code == 0, result.output
    assert SECRET_NAME not in result.output and site.secrets[0] not in result.output
    path = next(line for line in result.output.splitlines() if line.startswith("PATH="))
    assert result.output.startswith("PATH=")  # /proc/1/environ was empty
    for hidden in (sys.prefix, str(Path(sys.executable).parent), *map(str, default_hidden())):
        assert hidden not in path


async def test_a_setsid_grandchild_holding_stdout_does_not_outlive_the_timeout(
    bwrap: BwrapRunner, site: Site
) -> None:
    """At the timeout the namespace dies: run returns within the limit plus a little, nothing survives."""
    started = time.monotonic()
    result = await bwrap.run(
        f"setsid sh -c '{site.sleep} 1000' & {site.sleep} 1000", site.worktree, env=sandbox_env(),
        limits=Limits(timeout_s=2),
    )  # fmt: skip
    assert time.monotonic() - started < 5
    assert result.timed_out and result.exit_code is None
    assert result.reason == "timed out after 2 s"
    assert result.output.endswith("[autodev: the command was stopped after 2 s: timed out]")
    assert survivors(site.marker) == {}


async def test_a_daemon_left_by_a_command_that_exits_normally_is_gone(bwrap: BwrapRunner, site: Site) -> None:
    """The command exits 0 leaving a setsid child behind; the child dies with the sandbox."""
    result = await bwrap.run(
        f"setsid sh -c '{site.sleep} 1000' >/dev/null 2>&1 & echo started", site.worktree,
        env=sandbox_env(),
    )  # fmt: skip
    assert (result.exit_code, result.output, result.reason) == (0, "started\n", None)
    assert survivors(site.marker) == {}


async def test_a_memory_hog_is_refused_and_the_reason_says_memory(bwrap: BwrapRunner, site: Site) -> None:
    """2 GiB asked for under a 256 MiB limit: the allocation fails and the reason names memory."""
    result = await bwrap.run(
        "python3 -c 'b = bytearray(2 * 1024**3)'", site.worktree, env=sandbox_env(),
        limits=Limits(memory_bytes=256 << 20),
    )  # fmt: skip
    assert result.exit_code != 0
    assert result.reason == "ran out of memory (limit 256 MiB)"
    assert "MemoryError" in result.output


async def test_a_fork_loop_is_stopped_at_the_process_limit(bwrap: BwrapRunner, site: Site) -> None:
    """200 background processes under max_processes=32: stopped within seconds, the reason names processes."""
    started = time.monotonic()
    result = await bwrap.run(
        f"i=0; while [ $i -lt 200 ]; do {site.sleep} 1000 & i=$((i+1)); done; wait",
        site.worktree, env=sandbox_env(), limits=Limits(max_processes=32, timeout_s=30),
    )  # fmt: skip
    assert time.monotonic() - started < 5
    assert result.reason == "hit the process limit (32)" and not result.timed_out
    assert survivors(site.marker) == {}


@pytest.mark.skipif(
    os.geteuid() != 0 or not sandbox_module._kernel_at_least(6, 14),
    reason=f"{MISSING}root on Linux 6.14+ (pid_max per namespace)",
)
async def test_as_root_the_kernel_refuses_forks_past_the_namespace_pid_max(
    bwrap: BwrapRunner, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the watchdog asleep, fork fails after at most max_processes + 301 (RLIMIT_NPROC would not)."""
    monkeypatch.setattr(sandbox_run, "WATCH_INTERVAL", 60)
    result = await bwrap.run(
        f"i=0; while [ $i -lt 2000 ]; do {site.sleep} 1000 & i=$((i+1)); echo $i; done", site.worktree,
        env=sandbox_env(), limits=Limits(max_processes=32, timeout_s=30),
    )  # fmt: skip
    counts = [int(line) for line in result.output.splitlines() if line.isdigit()]
    assert counts, result.output[-3000:]
    assert 32 <= max(counts) <= 32 + 301
    assert result.reason == "hit the process limit (32)" and not result.timed_out
    assert survivors(site.marker) == {}


async def test_a_file_over_the_size_limit_cannot_be_written(bwrap: BwrapRunner, site: Site) -> None:
    """10 MB written under a 1 MiB file size limit: the write fails and the file stops at 1 MiB."""
    result = await bwrap.run(
        "python3 -c \"open('big.bin', 'wb').write(b'x' * 10_000_000)\"", site.worktree, env=sandbox_env(),
        limits=Limits(file_size_bytes=1 << 20),
    )  # fmt: skip
    assert result.exit_code != 0
    assert result.reason == "wrote a file over the size limit (1 MiB)"
    assert (site.worktree / "big.bin").stat().st_size <= 1 << 20


async def test_a_flood_of_output_keeps_only_the_tail_and_is_stopped(bwrap: BwrapRunner, site: Site) -> None:
    """5 MB of output with output_bytes=10_000: only the last bytes are kept, and the reason names output."""
    result = await bwrap.run(
        "python3 -c \"import sys; sys.stdout.write('x' * 5_000_000 + 'END')\"", site.worktree,
        env=sandbox_env(), limits=Limits(output_bytes=10_000),
    )  # fmt: skip
    assert len(result.output.encode()) <= 10_000
    assert result.reason is not None and "output over" in result.reason
    assert "[autodev: the command was stopped" in result.output


async def test_output_over_the_cap_keeps_the_tail_and_the_run(bwrap: BwrapRunner, site: Site) -> None:
    """100 kB with output_bytes=10_000 (below the flood mark): the run completes, the tail ends in END."""
    result = await bwrap.run(
        "python3 -c \"print('y' * 100_000 + 'END')\"", site.worktree, env=sandbox_env(),
        limits=Limits(output_bytes=10_000),
    )  # fmt: skip
    assert result.exit_code == 0
    assert result.reason == "output over 10000 bytes, kept the last 10000"
    assert result.output.endswith("END\n[autodev: output over 10000 bytes, kept the last 10000]")
    assert len(result.output.encode()) <= 10_000


async def test_a_failing_command_is_a_result_not_an_exception(bwrap: BwrapRunner, site: Site) -> None:
    """exit 3 comes back as exit_code 3 with its output and no reason."""
    result = await bwrap.run("echo failing; exit 3", site.worktree, env=sandbox_env())
    assert result == CommandResult(3, "failing\n", False, None, "bwrap", False)


async def test_a_command_killed_by_a_signal_says_which(bwrap: BwrapRunner, site: Site) -> None:
    """A segfault is a result whose reason names the signal."""
    result = await bwrap.run("sh -c 'kill -SEGV $$'", site.worktree, env=sandbox_env())
    assert result.exit_code == 128 + 11
    assert result.reason == "killed by signal 11 (SIGSEGV)"
    assert result.output.endswith("[autodev: killed by signal 11 (SIGSEGV)]")


async def test_a_cancelled_run_leaves_nothing_behind(bwrap: BwrapRunner, site: Site) -> None:
    """When the caller gives up (the job is cancelled), the sandbox and its daemons die with the call."""
    command = f"setsid sh -c '{site.sleep} 1000' & {site.sleep} 1000"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bwrap.run(command, site.worktree, env=sandbox_env()), 1)
    assert survivors(site.marker) == {}


async def test_a_tail_cut_inside_a_utf8_character_stays_within_the_cap(
    bwrap: BwrapRunner, site: Site
) -> None:
    """Two-byte characters cut at an odd offset: no replacement character, no byte over output_bytes."""
    result = await bwrap.run(
        "python3 -c \"print('é' * 50_000)\"",
        site.worktree,
        env=sandbox_env(),
        limits=Limits(output_bytes=10_001),
    )
    assert "\ufffd" not in result.output
    assert len(result.output.encode()) <= 10_001


async def test_network_true_shares_the_hosts_network(bwrap: BwrapRunner, site: Site) -> None:
    """A repository allowed the network reaches the host's 127.0.0.1 (the flag does what it says)."""
    script = f"import socket; socket.create_connection(('127.0.0.1', {site.port}), 2); print('ok')"
    result = await bwrap.run(f'python3 -c "{script}"', site.worktree, env=sandbox_env(), network=True)
    assert (result.exit_code, result.output, result.network) == (0, "ok\n", True)


async def test_unsandboxed_timeout_returns_even_when_a_grandchild_holds_stdout(site: Site) -> None:
    """SANDBOX=none stops reading at the timeout; only the sandbox can also kill the setsid grandchild."""
    started = time.monotonic()
    try:
        result = await UnsandboxedRunner().run(
            f"setsid sh -c '{site.sleep} 1000' & {site.sleep} 1000", site.worktree, env=sandbox_env(),
            limits=Limits(timeout_s=2),
        )  # fmt: skip
        left_behind = survivors(site.marker)
    finally:
        kill_survivors(site.marker)
    assert time.monotonic() - started < 5
    assert result.timed_out and result.sandbox == "none" and result.network is True
    assert left_behind  # what SANDBOX=none cannot do


async def test_unsandboxed_runs_set_the_rlimits(site: Site) -> None:
    """SANDBOX=none still applies the memory and file size limits through preexec_fn."""
    result = await UnsandboxedRunner().run(
        "ulimit -v; ulimit -f", site.worktree, env=sandbox_env(),
        limits=Limits(memory_bytes=256 << 20, file_size_bytes=1 << 20),
    )  # fmt: skip
    assert result.output.split() == [str(256 * 1024), str(1024 * 2)]


def test_make_runner_fails_closed_without_bwrap() -> None:
    """bwrap missing → SandboxUnavailable saying how to install it or choose SANDBOX=none; none → none."""
    for mode in ("bwrap", "auto"):
        with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*SANDBOX=none"):
            make_runner(mode, bwrap="/nonexistent/bwrap")
    assert isinstance(make_runner("none"), UnsandboxedRunner)
    with pytest.raises(ValueError):
        make_runner("docker")


def test_make_runner_gives_bwrap_when_it_works() -> None:
    """auto and bwrap give the bubblewrap runner where bwrap starts."""
    if problem := bwrap_problem():
        skip_without("a working bubblewrap", f"{problem}; apt-get install bubblewrap, user namespaces on")
    assert make_runner("auto").name == make_runner("bwrap").name == "bwrap"


def test_mounts_never_contain_a_hidden_path(site: Site) -> None:
    """No mount source holds the data dir, the venv or the checkout; a worktree around one is refused."""
    hidden = [site.data, *default_hidden()]
    args = mount_args(site.worktree, [site.mirror], hidden)
    for source in mount_sources(args):
        assert not any(h == source or source in h.parents for h in hidden), source
    assert ["--bind", str(site.worktree), str(site.worktree)] == args[-6:-3]
    assert ["--ro-bind", str(site.worktree / ".git"), str(site.worktree / ".git")] == args[-3:]
    with pytest.raises(ValueError, match="hidden"):
        mount_args(site.data.parent, [], hidden)


def test_sandbox_env_is_an_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the worker's environment but what the caller names; HOME is the private one in /tmp."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret")
    env = sandbox_env({"NODE_ENV": "test"})
    allowed = {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "CI", "PYTHONDONTWRITEBYTECODE", "NODE_ENV"}
    assert set(env) == allowed
    assert env["HOME"].startswith("/tmp/") and env["CI"] == "true"
