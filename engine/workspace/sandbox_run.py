"""One command under limits: what it may use, what comes back, and the loop that watches it.

Shared by both runners of engine/workspace/sandbox.py. The output is kept as a bounded tail while it streams;
at the wall-time limit, the process limit or an output flood the runner's `kill` ends the command, and
nobody waits for whoever still holds the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

GiB = 1 << 30
FLOOD_FACTOR = 50  # output beyond FLOOD_FACTOR × output_bytes stops the command
WATCH_INTERVAL = 0.1  # seconds between the watchdog's looks at the clock and the process count
DRAIN_GRACE = 0.5  # after the command ended, how long the output pipe may still deliver

MEMORY_ERROR = re.compile(rb"MemoryError|Cannot allocate memory|out of memory|std::bad_alloc", re.I)
FSIZE_ERROR = re.compile(rb"File too large|File size limit exceeded")
FORK_ERROR = re.compile(
    rb"Cannot fork|fork: (retry: )?Resource temporarily unavailable|can't start new thread"
)


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_s: float = 600
    memory_bytes: int = 4 * GiB
    max_processes: int = 512
    file_size_bytes: int = GiB
    output_bytes: int = 200_000


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int | None  # None when autodev stopped the command
    output: str  # the tail of stdout+stderr (≤ output_bytes), then "[autodev: …]" when there is a reason
    timed_out: bool
    reason: str | None  # a sentence when a limit cut the run or explains how it failed, else None
    sandbox: str  # "bwrap" | "none"
    network: bool


def rlimits(limits: Limits) -> dict[int, int]:
    return {
        resource.RLIMIT_AS: limits.memory_bytes,
        resource.RLIMIT_DATA: limits.memory_bytes,
        resource.RLIMIT_NPROC: limits.max_processes,
        resource.RLIMIT_FSIZE: limits.file_size_bytes,
        resource.RLIMIT_CORE: 0,
    }


async def read_pipe(fd: int) -> tuple[asyncio.StreamReader, asyncio.ReadTransport]:
    """A stream over the read end `fd`; closing the transport closes it (no waiting on its writers)."""
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def exited(pidfd: int, grace: float) -> None:
    """Until the process behind `pidfd` has exited (at most `grace` seconds)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, ready)
    try:
        await asyncio.wait_for(done, grace)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(pidfd)


async def supervise(
    proc: asyncio.subprocess.Process, reader: asyncio.StreamReader, limits: Limits, *,
    kill: Callable[[], None], count: Callable[[], int] | None, sandbox: str, network: bool,
) -> CommandResult:  # fmt: skip
    """Stream the output into a bounded tail until the command ends or a limit stops it; say why."""
    started = time.monotonic()
    cap, flood = limits.output_bytes, FLOOD_FACTOR * limits.output_bytes
    tail, total, cut = bytearray(), 0, None

    async def pump() -> None:
        nonlocal total, cut
        while chunk := await reader.read(65536):
            total += len(chunk)
            tail.extend(chunk)
            del tail[: max(0, len(tail) - cap)]
            if total > flood:
                cut = cut or f"output over {flood} bytes, kept the last {cap}"
                kill()
                return

    pumping = asyncio.ensure_future(pump())
    waiting = asyncio.ensure_future(proc.wait())
    try:
        while not waiting.done() and cut is None:
            left = started + limits.timeout_s - time.monotonic()
            if left <= 0:
                cut = f"timed out after {limits.timeout_s:g} s"
            elif count is not None and count() >= limits.max_processes:
                cut = f"hit the process limit ({limits.max_processes})"
            else:
                await asyncio.wait({waiting}, timeout=min(WATCH_INTERVAL, left))
        if cut is not None:
            kill()
        code = await waiting
        with contextlib.suppress(TimeoutError):  # whoever still holds the pipe is not waited for
            await asyncio.wait_for(asyncio.shield(pumping), DRAIN_GRACE)
    finally:  # also when the caller cancels: the runner's own finally kills the command
        for task in (pumping, waiting):
            task.cancel()
        await asyncio.gather(pumping, waiting, return_exceptions=True)
    timed_out = cut is not None and cut.startswith("timed out")
    reason = cut or explain(code, bytes(tail), limits)
    if reason is None and total > cap:
        reason = f"output over {cap} bytes, kept the last {cap}"
    if cut is not None:
        took = limits.timeout_s if timed_out else round(time.monotonic() - started, 1)
        trailer = f"[autodev: the command was stopped after {took:g} s: {'timed out' if timed_out else cut}]"
    else:
        trailer = f"[autodev: {reason}]" if reason else ""
    end = trailer.encode()
    if end and tail and not tail.endswith(b"\n"):
        end = b"\n" + end
    kept = bytes(tail[max(0, len(tail) - max(0, cap - len(end))) :]) if end else bytes(tail)
    skip = 0  # the cut may have split a UTF-8 sequence, whose leftover bytes would each grow into a "�"
    while len(kept) < total and skip < min(3, len(kept)) and 0x80 <= kept[skip] < 0xC0:
        skip += 1
    kept = kept[skip:]
    return CommandResult(
        exit_code=None if cut is not None else code, output=(kept + end).decode(errors="replace"),
        timed_out=timed_out, reason=reason, sandbox=sandbox, network=network,
    )  # fmt: skip


def explain(code: int, tail: bytes, limits: Limits) -> str | None:
    """A sentence for a run that ended by itself in a way a limit explains (best effort: no cgroups here)."""
    signum = -code if code < 0 else code - 128 if 128 < code < 160 else 0  # sh and bwrap say 128 + N
    if signum == signal.SIGXFSZ or (code and FSIZE_ERROR.search(tail)):
        return f"wrote a file over the size limit ({limits.file_size_bytes / (1 << 20):g} MiB)"
    if code and MEMORY_ERROR.search(tail):
        return f"ran out of memory (limit {limits.memory_bytes / (1 << 20):g} MiB)"
    if code and FORK_ERROR.search(tail):
        return f"hit the process limit ({limits.max_processes})"
    if not signum:
        return None
    try:
        return f"killed by signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        return f"killed by signal {signum}"
