"""The coder's tool box against a hostile or clumsy model: bounded, never blocking, always an answer."""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from engine.agents import search
from engine.agents.tools import ToolBox, closest_match
from engine.workspace.guard import EditGuard


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        self.events.append((type, data))


async def _no_tests() -> None:
    return None


async def _no_note(kind: str, text: str) -> None:
    return None


def toolbox(root: Path, protected: list[str] | None = None) -> tuple[ToolBox, Recorder]:
    recorder = Recorder()
    guard = EditGuard(root, protected or [])
    tools = ToolBox(guard, emit=recorder.emit, run_tests=_no_tests, remember=_no_note)
    return tools, recorder


async def call(tools: ToolBox, name: str, **args: Any) -> str:
    return await tools.call(name, json.dumps(args))


async def test_a_catastrophic_pattern_returns_at_once(tmp_path: Path) -> None:
    """Regression: search("(a+)+$") on a 26-character line blocked the event loop 14 s."""
    (tmp_path / "a.txt").write_text("a" * 40 + "b\n" + "a" * 30 + "\n")
    tools, _ = toolbox(tmp_path)
    started = time.monotonic()
    answer = await call(tools, "search", pattern="(a+)+$")
    assert time.monotonic() - started < 1.0
    assert answer == "a.txt:2: " + "a" * 30
    assert await call(tools, "search", pattern="(x+x+)+y") == "no matches"


async def test_a_slow_search_never_stalls_the_event_loop(tmp_path: Path) -> None:
    """A search over many files runs beside another job's work: the loop's longest stall stays short."""
    line = ("a" * 60 + "b\n").encode()
    for i in range(120):
        (tmp_path / f"f{i:03}.txt").write_bytes(line * 30_000)  # 1.8 MB each, no match anywhere
    tools, _ = toolbox(tmp_path)
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    # Catastrophic for a backtracking engine, and a DFA-state explosion for RE2: slow either way.
    answer = await call(tools, "search", pattern="(a+)+$|[ab]*a[ab]{15}c")
    took = time.perf_counter() - started
    done.set()
    await ticker
    assert answer.startswith("no matches")
    assert took > 0.1, "the search must be slow enough for the measure to mean something"
    assert max(gaps) < 0.1, f"the event loop stalled {max(gaps) * 1000:.0f} ms during a {took:.2f} s search"


async def test_search_is_bounded_in_hits_bytes_and_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "many.txt").write_text("match\n" * 500)
    (tmp_path / "big.txt").write_bytes(b"match\n" * 600_000)  # 3.6 MB: over the per-file limit
    tools, _ = toolbox(tmp_path)
    answer = await call(tools, "search", pattern="match")
    lines = answer.splitlines()
    assert len([x for x in lines if x.startswith("many.txt:")]) == search.SEARCH_MAX_HITS
    assert "more not shown" in answer and "skipped 1 files over" in answer
    monkeypatch.setattr(search, "SEARCH_SECONDS", 0.0)
    assert "took over" in await call(tools, "search", pattern="match")


async def test_a_pattern_re2_cannot_run_is_searched_literally(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = (a)\\1\nabab\n")
    tools, _ = toolbox(tmp_path)
    answer = await call(tools, "search", pattern="(a)\\1")
    assert answer.splitlines()[0] == "a.py:1: x = (a)\\1" and "literal" in answer
    assert "literal" in await call(tools, "search", pattern="(?=a)b")
    assert "literal" in await call(tools, "search", pattern="a" * 5000)


async def test_search_reads_no_fifo_and_leaves_the_tree_by_no_symlink(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("needle outside\n")
    (root / "out").symlink_to(tmp_path)
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    os.mkfifo(root / "pipe")
    (root / "in.txt").write_text("needle inside\n")
    tools, _ = toolbox(root)
    started = time.monotonic()
    assert await call(tools, "search", pattern="needle") == "in.txt:1: needle inside"
    assert await call(tools, "search", pattern="needle", path="in.txt") == "in.txt:1: needle inside"
    assert time.monotonic() - started < 1.0


async def test_a_fifo_read_is_an_error_at_once(tmp_path: Path) -> None:
    """Regression: read_file on a FIFO blocked until something wrote to it."""
    os.mkfifo(tmp_path / "pipe")
    tools, _ = toolbox(tmp_path)
    started = time.monotonic()
    answer = await asyncio.wait_for(call(tools, "read_file", path="pipe"), timeout=5)
    assert answer.startswith("error: refused") and "FIFO" in answer
    assert time.monotonic() - started < 1.0


async def test_a_huge_file_edit_is_refused_by_the_cap_quickly(tmp_path: Path) -> None:
    """Regression: edit_file on a 500 MB file took 84 s and 1 GB."""
    big = tmp_path / "big.log"
    big.write_text("".join(f"line {i}\n" for i in range(1, 5001)))
    os.truncate(big, 500 * 1024 * 1024)  # sparse: cheap to make
    tools, _ = toolbox(tmp_path)
    started = time.monotonic()
    answer = await call(tools, "edit_file", path="big.log", old_text="line 1\n", new_text="x\n")
    assert time.monotonic() - started < 1.0
    assert answer.startswith("error: big.log is 500.0 MB; edit_file works on files up to 1.0 MB")
    assert big.stat().st_size == 500 * 1024 * 1024 and big.read_bytes()[:7] == b"line 1\n"
    # A whole read shows the first part, the file's size and how to read on; a range comes back exactly.
    head = await call(tools, "read_file", path="big.log")
    assert head.startswith("line 1\nline 2\n") and len(head) < 17_000
    assert "big.log is 500.0 MB; shown lines 1-" in head and "start_line=" in head
    assert await call(tools, "read_file", path="big.log", start_line=4000, end_line=4002) == (
        "line 4000\nline 4001\nline 4002\n"
    )
    assert time.monotonic() - started < 3.0


async def test_read_file_ranges_and_notes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "empty").write_text("")
    (tmp_path / "long.txt").write_text("x" * 10_000 + "\nshort\n")
    tools, _ = toolbox(tmp_path)
    assert await call(tools, "read_file", path="a.txt") == "one\ntwo\nthree\n"
    assert await call(tools, "read_file", path="a.txt", start_line=2) == "two\nthree\n"
    assert await call(tools, "read_file", path="a.txt", start_line=2, end_line=99) == "two\nthree\n"
    assert "past its end" in await call(tools, "read_file", path="a.txt", start_line=9)
    assert "before start_line" in await call(tools, "read_file", path="a.txt", start_line=3, end_line=1)
    assert "binary file" in await call(tools, "read_file", path="bin")
    assert "empty" in await call(tools, "read_file", path="empty")
    long = await call(tools, "read_file", path="long.txt")
    assert "line cut here" in long and long.endswith("short\n")


async def test_list_files_is_bounded(tmp_path: Path) -> None:
    for i in range(450):
        (tmp_path / f"f{i:03}.py").write_text("")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules/x.js").write_text("")
    tools, _ = toolbox(tmp_path)
    answer = (await call(tools, "list_files")).splitlines()
    assert answer[0] == "f000.py" and len(answer) == 401 and "stopped at 400" in answer[-1]
    assert "no such file" in await call(tools, "list_files", path="nope")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"path": 5}', "path must be a string"),
        ('{"path": "a.txt", "start_line": "1"}', "start_line must be an integer"),
        ('{"path": "a.txt", "start_line": true}', "start_line must be an integer"),
        ('{"path": "a.txt", "mode": "rb"}', "no argument 'mode'"),
        ("{}", "path is missing"),
        ('{"path": null}', "path must be a string"),
    ],
)
async def test_bad_arguments_are_answered_not_raised(tmp_path: Path, raw: str, expected: str) -> None:
    tools, _ = toolbox(tmp_path)
    assert expected in await tools.call("read_file", raw)


async def test_null_optional_arguments_mean_absent(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n")
    tools, _ = toolbox(tmp_path)
    args = '{"path": "a.txt", "start_line": null, "end_line": null}'
    assert await tools.call("read_file", args) == "one\n"
    assert await tools.call("list_files", '{"path": null}') == "a.txt"


async def test_edits_keep_crlf_and_refuse_non_utf8(tmp_path: Path) -> None:
    (tmp_path / "win.txt").write_bytes(b"a = 1\r\nb = 2\r\n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    tools, _ = toolbox(tmp_path)
    answer = await call(tools, "edit_file", path="win.txt", old_text="a = 1\nb = 2", new_text="a = 1\nb = 3")
    assert answer == "edited win.txt" and (tmp_path / "win.txt").read_bytes() == b"a = 1\r\nb = 3\r\n"
    answer = await call(tools, "edit_file", path="latin1.txt", old_text="caf", new_text="tea")
    assert "not UTF-8" in answer and (tmp_path / "latin1.txt").read_bytes() == b"caf\xe9\n"


async def test_a_refused_write_is_told_counted_and_emitted(tmp_path: Path) -> None:
    tools, recorder = toolbox(tmp_path, ["secrets"])
    for path in (".GIT/config", ".git./x", "secrets/k", ".github/workflows/x.yml"):
        answer = await call(tools, "create_file", path=path, content="x")
        assert answer.startswith("error: refused") and answer.endswith("Nothing was changed.")
    assert tools.refused == 4 and [t for t, _ in recorder.events] == ["edit_refused"] * 4
    assert os.listdir(tmp_path) == []


def test_the_best_window_wins_over_an_anagram() -> None:
    """Regression: quick_ratio was compared with ratio, so an anagram window (quick_ratio 1.0, ratio 0.2)
    replaced a 0.94 near match, and the model was told "No similar text found"."""
    wanted = "    total = compute_total(items, tax_rate)"
    near = "    total = compute_total(cart_items, tax_rate)"
    chars = list(wanted)
    random.Random(3).shuffle(chars)
    anagram = "".join(chars)
    assert 0.93 < difflib.SequenceMatcher(None, near, wanted).ratio() < 0.95
    assert difflib.SequenceMatcher(None, anagram, wanted).quick_ratio() == 1.0
    text = "def f(items):\n" + near + "\n    pass\n" + anagram + "\n    return total\n"
    answer = closest_match(text, wanted)
    assert answer.startswith(". The closest text in the file (line 2, 94% alike) is:\n")
    assert answer.endswith(near)
    two_lines = closest_match("a\nb = 1\nc = 2\nd\n", "b = 1\nc = 3")
    assert "(lines 2-3," in two_lines and two_lines.endswith("b = 1\nc = 2")
    assert "No similar text" in closest_match("zzz", "completely different text here")


async def test_the_review_tool_is_offered_only_to_a_job_answering_a_review_and_its_arguments_are_checked(
    tmp_path: Path,
) -> None:
    plain, _ = toolbox(tmp_path)
    assert "review_comment" not in [t["function"]["name"] for t in plain.schemas]
    answer = await call(plain, "review_comment", number=1, addressed=True, reply="done")
    assert answer.startswith("error: unknown tool 'review_comment'")

    said: list[tuple[int, bool, str]] = []

    async def ledger(number: int, addressed: bool, reply: str) -> str:
        said.append((number, addressed, reply))
        return "noted"

    guard = EditGuard(tmp_path, [])
    tools = ToolBox(guard, emit=Recorder().emit, run_tests=_no_tests, remember=_no_note, review=ledger)
    assert "review_comment" in [t["function"]["name"] for t in tools.schemas]
    assert await call(tools, "review_comment", number=2, addressed=False, reply="out of scope") == "noted"
    bad = await call(tools, "review_comment", number="2", addressed="yes", reply="x")
    assert "number must be an integer" in bad and "addressed must be true or false" in bad
    assert said == [(2, False, "out of scope")]
