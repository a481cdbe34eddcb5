"""What the model is shown of a file: a bounded range of its lines, and the text most like a missed edit.

Both run in a worker thread (the tool box's), on bytes read through the edit guard, and both are bounded:
a read stops at READ_MAX_CHARS of output and READ_SCAN_MAX_BYTES of file, whatever range was asked for,
and closest_match gives up after CLOSEST_SECONDS with the best window found so far.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterator
from typing import BinaryIO

# Under the coder's clip of a tool's answer (20,000 characters), so the note on what to read next survives.
READ_MAX_CHARS = 16_000
READ_SCAN_MAX_BYTES = 64 * 1024 * 1024
LINE_MAX_BYTES = 4_000
CLOSEST_SECONDS = 2.0
CLOSEST_MIN_RATIO = 0.5


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024:
            return f"{size:,} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GB"


def is_binary(head: bytes) -> bool:
    return b"\0" in head[:8192]


def read_range(file: BinaryIO, *, rel: str, size: int, start: int | None, end: int | None) -> str:
    """Lines start..end (1-based, inclusive; the whole file when neither is given) as text. A whole file
    that fits comes back exactly; anything cut short ends with a note saying what was shown and how to
    ask for the rest."""
    first = max(1, start or 1)
    if end is not None and end < first:
        return f"error: end_line ({end}) is before start_line ({first})"
    shown: list[str] = []
    chars, last, stopped, number = 0, 0, "", 0
    for number, line in _lines(file):
        if number < first:
            continue
        if end is not None and number > end:
            break
        if chars + len(line) > READ_MAX_CHARS:
            stopped = "size"
            break
        shown.append(line)
        chars += len(line)
        last = number
    else:
        stopped = "scan" if file.tell() < size else "eof"
    text = "".join(shown)
    if not shown and stopped == "scan":
        return f"error: line {first} is beyond the first {human_size(READ_SCAN_MAX_BYTES)} of {rel}"
    if not shown and stopped == "eof":
        if number == 0:
            return f"({rel} is empty)"
        return f"error: {rel} has {number} lines; start_line {first} is past its end"
    if stopped in ("", "eof"):
        return text
    big = f"{rel} is {human_size(size)}"
    if not shown:
        return f"error: line {first} of {rel} is over {READ_MAX_CHARS:,} characters long; {big}"
    return (
        f"{text}{'' if text.endswith(chr(10)) else chr(10)}"
        f"[{big}; shown lines {first}-{last}. Read on with start_line={last + 1} (and end_line); "
        f"each read returns at most {READ_MAX_CHARS:,} characters]"
    )


def _lines(file: BinaryIO) -> Iterator[tuple[int, str]]:
    """(number, text) of each line, within the first READ_SCAN_MAX_BYTES; a very long line is cut."""
    number = scanned = 0
    while scanned < READ_SCAN_MAX_BYTES:
        chunk = file.readline(LINE_MAX_BYTES)
        if not chunk:
            return
        scanned += len(chunk)
        number += 1
        line = chunk.decode("utf-8", errors="replace")
        if not chunk.endswith(b"\n"):
            rest = 0
            while chunk and not chunk.endswith(b"\n") and scanned < READ_SCAN_MAX_BYTES:
                chunk = file.readline(1024 * 1024)
                scanned += len(chunk)
                rest += len(chunk)
            if rest:
                line += f"[… line cut here: {human_size(rest)} more]\n"
        yield number, line


def closest_match(text: str, wanted: str, *, seconds: float = CLOSEST_SECONDS) -> str:
    """The window of `text` (as many lines as `wanted`) most like `wanted`, with its line numbers, so the
    model can copy the real text. quick_ratio() only bounds ratio() from above: it decides which windows
    are worth a ratio(), and only ratios are compared."""
    lines = text.splitlines()
    size = max(1, len(wanted.splitlines()))
    matcher = difflib.SequenceMatcher(None)
    matcher.set_seq2(wanted)
    best_ratio, best_start = 0.0, -1
    give_up = time.monotonic() + seconds
    for start in range(max(1, len(lines) - size + 1)):
        if time.monotonic() > give_up:
            break
        matcher.set_seq1("\n".join(lines[start : start + size]))
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best_ratio, best_start = ratio, start
    if best_start < 0 or best_ratio < CLOSEST_MIN_RATIO:
        return ". No similar text found; read the file first."
    window = lines[best_start : best_start + size]
    where = (
        f"line {best_start + 1}" if len(window) == 1 else f"lines {best_start + 1}-{best_start + len(window)}"
    )
    return f". The closest text in the file ({where}, {best_ratio:.0%} alike) is:\n" + "\n".join(window)
