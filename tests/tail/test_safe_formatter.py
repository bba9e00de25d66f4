"""SafeFormatter in-process: escaping and missing fields, for every format style."""

from __future__ import annotations

import logging

import pytest

from fabric.tail import SafeFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "app", "msg": "hello\r\nforged", "levelno": 20, "levelname": "INFO"})
    record.__dict__.update(extra)
    return record


class TestMissingFields:
    """A field the format names but a remote record lacks."""

    @pytest.mark.parametrize(
        ("fmt", "style"),
        [
            ("%(user)s|%(message)s", "%"),
            ("{user}|{message}", "{"),
            ("{user!r:>3}|{message}", "{"),
            ("${user}|$message", "$"),
        ],
    )
    def test_renders_as_dash_in_every_style(self, fmt: str, style: str) -> None:
        """The missing field renders as '-' (or its repr) and the message is still escaped."""
        out = SafeFormatter(fmt, style=style).format(_record())
        assert out.split("|") in (["-", "hello\\r\\nforged"], ["'-'", "hello\\r\\nforged"])

    def test_present_field_is_used_and_escaped(self) -> None:
        """A present extra is formatted, with its control characters escaped."""
        out = SafeFormatter("%(user)s %(message)s").format(_record(user="eve\x1b[2J"))
        assert out == "eve\\x1b[2J hello\\r\\nforged"

    def test_record_is_not_changed(self) -> None:
        """Filling a missing field does not add it to the caller's record."""
        record = _record()
        SafeFormatter("%(user)s %(message)s").format(record)
        assert "user" not in record.__dict__

    def test_style_given_positionally_is_honoured(self) -> None:
        """SafeFormatter(fmt, datefmt, "{") finds the fields the same way as style="{"."""
        out = SafeFormatter("{user}|{message}", None, "{").format(_record())
        assert out == "-|hello\\r\\nforged"
