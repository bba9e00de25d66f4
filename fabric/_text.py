"""Text that cannot fail: any object as a string, any string as UTF-8 that travels."""

from __future__ import annotations

__all__ = ["safe_repr", "safe_str", "scrub"]


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder naming the type when its ``__str__`` raises."""
    try:
        return str(value)
    except Exception as exc:  # a broken __str__ must not lose the record
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder naming the type when its ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"


def scrub(text: str) -> str:
    """``text`` with every lone surrogate escaped, so that it encodes as UTF-8."""
    # A lone surrogate (an undecodable file name, say) cannot travel as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
