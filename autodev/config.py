"""Loading `Settings` once, with a one-line error per bad variable instead of a traceback."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import ValidationError

from engine.settings import Settings


class SettingsError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(p) for p in error["loc"]).upper() or "SETTINGS"
            given = error.get("input")
            secret = isinstance(given, dict) or name.endswith(("KEY", "SECRET", "TOKEN"))
            shown = "" if secret else f" (got {given!r})"
            # pydantic starts a validator's refusal with "Value error, ", which tells the operator nothing.
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"autodev: invalid setting {name}: {message}{shown}")
        raise SettingsError("\n".join(lines)) from None


def exit_on_settings_error(error: SettingsError) -> int:
    print(error.message, file=sys.stderr)
    return 2
