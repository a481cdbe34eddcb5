"""Running a workspace command (tests, setup steps) whose code an attacker may have written.

`BwrapRunner` runs it in bubblewrap: new user/pid/ipc/uts/cgroup (and unless allowed network) namespaces, no
capabilities, an allow-listed filesystem and environment (sandbox_fs.py), limits (sandbox_run.py).
Nothing is left behind: the sandbox's pid 1 is bwrap's init, and when it dies the kernel kills every process
of the namespace. `UnsandboxedRunner` is SANDBOX=none, the operator's explicit choice: no isolation.

Found on Linux 6.18 with the worker running as the host's root and no cgroup controllers:
- RLIMIT_NPROC never bites for a task whose real uid is the host's root, and a user namespace does not change
  that (`--uid 1000` is still kernel uid 0: under RLIMIT_NPROC=32 a shell loop starts 100 processes). What
  bites is the PID namespace's own pid_max (one per namespace since Linux 6.14): bwrap waits on --block-fd
  while autodev enters the new namespace (nsenter, as root) and writes 301 + max_processes there; fork then
  fails ~300 processes over the limit at worst, and at the limit once pids have wrapped. A watchdog counts
  the namespace's processes every 0.1 s and stops the command at the limit, with the reason. A worker that
  is not root gets RLIMIT_NPROC instead, set once the sandbox's user namespace exists so that it counts that
  namespace's processes only (the rlimits are set on the waiting sandbox with prlimit, not in a preexec_fn).
- Inside, the command is uid/gid 1000, not 0: the host root's files (the worktree) show as its own, so git
  accepts the repository and tests that behave differently as root do not.
- Memory is RLIMIT_AS + RLIMIT_DATA per process: without cgroups nothing bounds the sum below
  max_processes × memory_bytes, and "ran out of memory" is read from the command's own error text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from engine.workspace.sandbox_fs import (
    SANDBOX_HOME,
    Mount,
    default_hidden,
    masked_paths,
    mount_args,
    sandbox_env,
)
from engine.workspace.sandbox_run import CommandResult, Limits, exited, read_pipe, rlimits, supervise

__all__ = [
    "BwrapRunner", "CommandResult", "CommandRunner", "Limits", "Mount", "SandboxUnavailable",
    "UnsandboxedRunner", "bwrap_problem", "make_runner", "sandbox_env",
]  # fmt: skip

INSTALL_HINT = "install bubblewrap (Debian: apt-get install bubblewrap) or set SANDBOX=none"
CANNOT_START_HINT = (
    "user namespaces must be allowed: sysctl kernel.unprivileged_userns_clone=1 or, on Ubuntu 23.10+, an "
    "AppArmor profile for bwrap; in a container, the worker's seccomp and AppArmor options of "
    "docker-compose.yml (README: Deploying); or set SANDBOX=none"
)
IDENTITY = ["--uid", "1000", "--gid", "1000"]
ISOLATION = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--cap-drop", "ALL", *IDENTITY]  # fmt: skip


class SandboxUnavailable(Exception):
    """No sandbox can be started; the message says what to do about it."""


class CommandRunner(Protocol):
    """Runs `command` in `workdir`; `mounts` and `workdir_at` (the path the command sees the workdir at)
    need a sandbox: the unsandboxed runner refuses them."""

    name: str

    async def run(
        self, command: str, workdir: Path, *, env: Mapping[str, str], network: bool = False,
        limits: Limits = Limits(), readonly: Sequence[Path] = (), mounts: Sequence[Mount] = (),
        workdir_at: Path | None = None,
    ) -> CommandResult: ...  # fmt: skip


@functools.cache
def _probe(bwrap: str) -> tuple[str | None, bool]:
    """(why bwrap cannot run a trivial sandbox here or None, whether it has --disable-userns)."""
    path = shutil.which(bwrap)
    if path is None:
        return f"bwrap not found ({bwrap}): {INSTALL_HINT}", False
    base = [path, *ISOLATION, "--unshare-net", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    for extra in (["--disable-userns"], []):
        done = subprocess.run([*base, *extra, "true"], env={}, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return None, bool(extra)
        if "disable-userns" not in done.stderr:
            break
    said = done.stderr.strip() or f"exit {done.returncode}"
    return f"bwrap cannot start a sandbox: {said} ({CANNOT_START_HINT})", False


def bwrap_problem(bwrap: str = "bwrap") -> str | None:
    """None when a trivial bwrap sandbox starts here, else why not (probed once per executable)."""
    return _probe(bwrap)[0]


def make_runner(
    mode: str, *, bwrap: str = "bwrap", hidden: Sequence[Path] = (), exposed: Sequence[Path] = ()
) -> CommandRunner:
    """SANDBOX=bwrap|auto → BwrapRunner or SandboxUnavailable (never a silent fallback); none → no sandbox."""
    if mode == "none":
        return UnsandboxedRunner()
    if mode in ("bwrap", "auto"):
        return BwrapRunner(bwrap=bwrap, hidden=hidden, exposed=exposed)
    raise ValueError(f"SANDBOX must be bwrap, none or auto, not {mode!r}")


def _kernel_at_least(major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return found is not None and (int(found[1]), int(found[2])) >= (major, minor)


class BwrapRunner:
    """bubblewrap; `hidden` (the data dir, …) adds to autodev's venv and checkout, which no mount may hold;
    `exposed` are read-only paths every command sees (SANDBOX_READONLY_PATHS: the operator's toolchains)."""

    name = "bwrap"

    def __init__(
        self, *, bwrap: str = "bwrap", hidden: Sequence[Path] = (), exposed: Sequence[Path] = ()
    ) -> None:
        problem, self._disable_userns = _probe(bwrap)
        if problem:
            raise SandboxUnavailable(problem)
        self.bwrap = shutil.which(bwrap) or bwrap
        self.exposed = tuple(Path(p).resolve() for p in exposed)
        everything = dict.fromkeys([*default_hidden(), *(Path(h).resolve() for h in hidden)])
        self.hidden = tuple(h for h in everything if h not in self.exposed)
        self._cap_pids = os.geteuid() == 0 and _kernel_at_least(6, 14) and shutil.which("nsenter") is not None
        sandbox_env(), masked_paths()  # the one-time look at PATH's toolchains and /etc, here and not mid-job

    def _args(
        self, workdir: Path, env: Mapping[str, str], network: bool, readonly: Sequence[Path],
        mounts: Sequence[Mount] = (), at: Path | None = None,
    ) -> list[str]:  # fmt: skip
        return [
            self.bwrap, *ISOLATION, *([] if network else ["--unshare-net"]),
            *(["--disable-userns"] if self._disable_userns else []), "--hostname", "sandbox",
            *mount_args(workdir, readonly, self.hidden, mounts=mounts, at=at),
            "--chdir", str(at or workdir.resolve()), "--clearenv",
            *[a for name, value in env.items() for a in ("--setenv", name, value)],
        ]  # fmt: skip

    async def run(
        self, command: str, workdir: Path, *, env: Mapping[str, str], network: bool = False,
        limits: Limits = Limits(), readonly: Sequence[Path] = (), mounts: Sequence[Mount] = (),
        workdir_at: Path | None = None,
    ) -> CommandResult:  # fmt: skip
        args = self._args(workdir, env, network, [*self.exposed, *readonly], mounts, workdir_at)
        (info_r, info_w), (block_r, block_w), (out_r, out_w) = os.pipe(), os.pipe(), os.pipe()
        handshake = ["--info-fd", str(info_w), "--block-fd", str(block_r), "--", "/bin/sh", "-c", command]
        try:
            # env={}: the sandbox's pid 1 is bwrap, and /proc/1/environ is readable inside.
            proc = await asyncio.create_subprocess_exec(
                *args, *handshake, env={}, stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w,
                pass_fds=(info_w, block_r), start_new_session=True,
            )  # fmt: skip
        except BaseException:
            for fd in (info_r, block_w, out_r):
                os.close(fd)
            raise
        finally:
            for fd in (info_w, block_r, out_w):
                os.close(fd)
        (info, info_pipe), (output, out_pipe) = await read_pipe(info_r), await read_pipe(out_r)
        pidfd = -1
        try:
            text = await asyncio.wait_for(info.read(), 60)  # written and closed before bwrap blocks
            if not text:
                await proc.wait()
                said = (await asyncio.wait_for(output.read(), 5)).decode(errors="replace").strip()
                raise SandboxUnavailable(f"bwrap could not start the sandbox: {said or proc.returncode}")
            child = int(json.loads(text)["child-pid"])  # the sandbox's pid 1, blocked on block_r
            pidfd = os.pidfd_open(child)
            for which, value in rlimits(limits).items():
                resource.prlimit(child, which, (value, value))
            if self._cap_pids:
                await _write_pid_max(child, 301 + limits.max_processes)
            os.write(block_w, b"go")
            return await supervise(
                proc, output, limits, kill=lambda: _kill_bwrap(proc, pidfd),
                count=lambda: _count_processes(child), sandbox="bwrap", network=network,
            )  # fmt: skip
        finally:
            _kill_bwrap(proc, pidfd)  # before block_w closes: EOF on it would start the command too
            os.close(block_w)
            info_pipe.close()
            out_pipe.close()
            await proc.wait()
            if pidfd >= 0:
                await exited(pidfd, 5)  # its pid 1 exits after the namespace's last process
                os.close(pidfd)


class UnsandboxedRunner:
    """SANDBOX=none: a new session, rlimits, the process group killed at the end. No isolation at all."""

    name = "none"

    async def run(
        self, command: str, workdir: Path, *, env: Mapping[str, str], network: bool = False,
        limits: Limits = Limits(), readonly: Sequence[Path] = (), mounts: Sequence[Mount] = (),
        workdir_at: Path | None = None,
    ) -> CommandResult:  # fmt: skip
        if mounts or workdir_at is not None:
            raise ValueError("mounts and workdir_at need a sandbox; without one the command sees the host")
        limited = rlimits(limits)

        def preexec() -> None:
            for which, value in limited.items():
                resource.setrlimit(which, (value, value))

        with tempfile.TemporaryDirectory(prefix="autodev-home-", ignore_cleanup_errors=True) as home:
            env = {**env, "HOME": home} if env.get("HOME") == SANDBOX_HOME else dict(env)
            out_r, out_w = os.pipe()
            try:
                proc = await asyncio.create_subprocess_exec(
                    "/bin/sh", "-c", command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=out_w, stderr=out_w, start_new_session=True, preexec_fn=preexec,
                )  # fmt: skip
            except BaseException:
                os.close(out_r)
                raise
            finally:
                os.close(out_w)
            output, out_pipe = await read_pipe(out_r)
            try:
                return await supervise(
                    proc, output, limits, kill=lambda: _kill_group(proc.pid), count=None,
                    sandbox="none", network=True,
                )  # fmt: skip
            finally:
                out_pipe.close()
                _kill_group(proc.pid)


async def _write_pid_max(pid: int, value: int) -> None:
    """pid_max of the sandbox's PID namespace (per namespace since 6.14), written from inside it."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--target={pid}", "--pid", "--", "/bin/sh", "-c",
        f"echo {value} > /proc/sys/kernel/pid_max", env={}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()


def _count_processes(pid: int) -> int:
    """Processes in the sandbox's PID namespace besides bwrap's init, seen through its own /proc.

    Until bwrap has mounted that /proc, the path shows the host's (the same filesystem as ours): counting
    it then would stop a command for the host's processes, so nothing is counted (nor running) yet."""
    own = f"/proc/{pid}/root/proc"
    try:
        if os.stat(own).st_dev == os.stat("/proc").st_dev:
            return 0
        return sum(name.isdigit() for name in os.listdir(own)) - 1
    except OSError:
        return 0


def _kill_bwrap(proc: asyncio.subprocess.Process, pidfd: int) -> None:
    """SIGKILL to the sandbox's pid 1 (the kernel then kills its whole namespace) and to bwrap outside."""
    if pidfd >= 0:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
