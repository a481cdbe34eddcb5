"""`@slug verb rest…` in a comment, only where a person typed it: the comment is read as Markdown.

A mention inside a fenced or indented code block, inline code, a `>` quote or raw HTML (an HTML comment,
a `<details>` block) is text someone quoted, pasted or hid — the App's own help text quoted back, a log, a
template — not a command. So the comment is parsed (markdown-it-py, CommonMark) and only the text of
paragraphs, headings and list items outside quotes is searched; what follows the command (a revise's
instructions) is kept with its code spans and any later blocks, as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

# GitHub caps a comment at 65,536 characters; a signed payload cannot carry more, this is belt and braces.
MAX_COMMENT_CHARS = 65_536
_MARKDOWN = MarkdownIt("commonmark")
# A hidden character stands in for code and HTML, so a mention there never matches and offsets still do.
_HIDDEN = "\x00"
_LOGIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"


@dataclass(frozen=True, slots=True)
class Command:
    login: str  # who was mentioned, as written (without "[bot]")
    verb: str  # lower-cased
    rest: str  # what follows the verb, stripped


def _mention(slug: str | None) -> re.Pattern[str]:
    name = re.escape(slug) if slug else _LOGIN
    # The whole name (not a longer login it starts), then spaces with at most one line break, then a word.
    return re.compile(
        rf"(?<![\w@/-])@({name})(?![\w-])(?:\[bot\])?(?=\s)[ \t]*\n?[ \t]*([A-Za-z]\w*)\b", re.I
    )


def find_command(text: str, slug: str | None) -> Command | None:
    """The first `@slug verb` typed as text in the comment; with `slug` None, the first `@anyone verb`."""
    text = text[:MAX_COMMENT_CHARS]
    pattern = _mention(slug)
    lines = text.splitlines(keepends=True)
    quotes = 0
    for token in _MARKDOWN.parse(text):
        if token.type == "blockquote_open":
            quotes += 1
        elif token.type == "blockquote_close":
            quotes -= 1
        elif token.type == "inline" and quotes == 0:
            shown, written = _flatten(token.children or [])
            match = pattern.search(shown)
            if match is None:
                continue
            after = token.map[1] if token.map else len(lines)
            rest = written[match.end() :] + "\n" + "".join(lines[after:])
            return Command(match.group(1), match.group(2).lower(), rest.strip())
        # fence, code_block and html_block carry their text outside `inline` tokens: never searched.
    return None


def _flatten(children: list[Token]) -> tuple[str, str]:
    """The inline text twice, of equal length: with code and HTML hidden (to search), and as written."""
    shown: list[str] = []
    written: list[str] = []
    for child in children:
        if child.type == "text":
            part = hidden = child.content
        elif child.type in ("softbreak", "hardbreak"):
            part = hidden = "\n"
        elif child.type == "code_inline":
            part = f"{child.markup}{child.content}{child.markup}"
            hidden = _HIDDEN * len(part)
        elif child.type == "html_inline":
            part = child.content
            hidden = _HIDDEN * len(part)
        else:
            continue  # the open/close marks of emphasis and links: their text comes as `text` children
        written.append(part)
        shown.append(hidden)
    return "".join(shown), "".join(written)
