"""SafeFormatter in-process: escaping and missing fields, for every format style."""

from __future__ import annotations

import logging
import unicodedata

import pytest

from fabric.tail import SafeFormatter, escape


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


class TestInvisibleCharacters:
    """Characters that change how a line looks without showing themselves."""

    def test_every_format_and_separator_character_is_escaped(self) -> None:
        """Every Unicode Cf, Zl and Zp character (bidi, zero-width, tags, U+2028/9) prints as its escape."""
        invisible = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cf", "Zl", "Zp")]
        assert len(invisible) > 150
        for char in invisible:
            code = ord(char)
            expected = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            assert escape(f"a{char}b") == f"a{expected}b", hex(code)

    def test_printable_text_is_untouched(self) -> None:
        """Letters, accents, CJK, emoji and combining marks stay as they are."""
        text = "café 日本 ☕ 😀 e\u0301 Ωμέγα"
        assert escape(text) == text


def _too_deep_for_str() -> list[object]:
    """A list nested so deep that ``str()`` raises RecursionError on every supported Python.

    3.11 gives up at its recursion limit (1000); 3.12 and later count C stack
    depth instead, so they need far more than the decoder's 1024 levels.
    """
    deep: list[object] = []
    for _ in range(200_000):
        deep = [deep]
    return deep


class TestFallback:
    """A record the format cannot render comes out in the default layout, marked, and counted; nothing raises."""

    @pytest.mark.parametrize(
        ("fmt", "style", "extra"),
        [
            ("%(process)d %(message)s", "%", {"process": None}),
            ("%(user)d %(message)s", "%", {}),
            ("{process:d} {message}", "{", {"process": None}),
            ("%(deep)s %(message)s", "%", {"deep": _too_deep_for_str()}),
        ],
    )
    def test_the_fallback_line_is_marked_and_counted(self, fmt: str, style: str, extra: dict[str, object]) -> None:
        """The line keeps level, logger and escaped message, says why the format failed, and counts it."""
        formatter = SafeFormatter(fmt, style=style)
        out = formatter.format(_record(service="svc", **extra))
        assert out.startswith(f"{formatter.formatTime(_record())[:10]}")
        assert " svc INFO     app: hello\\r\\nforged [logfabric: the format failed on this record (" in out
        assert out.endswith("; shown in the fallback form]") and "\n" not in out
        assert formatter.fallbacks == 1

    def test_a_traceback_stays_marked_in_the_fallback(self) -> None:
        """Traceback lines of a fallback record are still escaped continuation lines."""
        formatter = SafeFormatter("%(process)d %(message)s")
        out = formatter.format(_record(process=None, exc_text="Traceback\nforged: \x1b[2J"))
        head, *rest = out.split("\n")
        assert head.endswith("shown in the fallback form]")
        assert rest == ["  | Traceback", "  | forged: \\x1b[2J"]

    def test_a_record_that_renders_is_not_counted(self) -> None:
        """The counter moves only for fallbacks."""
        formatter = SafeFormatter("%(process)d %(message)s")
        formatter.format(_record(process=7))
        assert formatter.fallbacks == 0
