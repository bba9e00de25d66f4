"""The rehydration contract: what every decoded record must pass, and the caps it gets.

A reader turns a payload into record attributes and extras; :func:`finish`
makes them a record: the topic must follow from the record, extras may not
shadow a ``LogRecord`` attribute (fabric names are renamed ``extra_<name>``)
and are kept up to :attr:`Limits.extras`, and text over a cap is truncated with
a visible marker, each cut counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fabric._record import FABRIC_ATTRIBUTES, FORBIDDEN, Decoded, Limits, MalformedRecord, ReceivedRecord
from fabric.topic import make_topic

__all__ = ["apply_caps", "check_topic", "finish", "new_record"]

#: ``new_record(ReceivedRecord)``: a record with no attributes, to be given its ``__dict__``.
new_record = object.__new__

# Text attributes of a rehydrated record that the caps apply to.
_CAPPED = (
    ("msg", "message"),
    ("exc_text", "traceback"),
    ("stack_info", "traceback"),
    ("name", "field"),
    ("levelname", "field"),
    ("pathname", "field"),
    ("filename", "field"),
    ("module", "field"),
    ("funcName", "field"),
    ("threadName", "field"),
    ("processName", "field"),
    ("taskName", "field"),
    ("service", "field"),
    ("host", "field"),
)


def _truncate(value: str, cap: int) -> str:
    return f"{value[:cap]}... [logfabric: truncated {len(value) - cap} chars]"


def apply_caps(attrs: dict[str, Any], extras: dict[str, Any], lim: Limits) -> int:
    """Truncate oversized text in place; return how many cuts were made."""
    cuts = 0
    for key, which in _CAPPED:
        value = attrs[key]
        cap = getattr(lim, which)
        if value is not None and len(value) > cap:
            attrs[key] = _truncate(value, cap)
            cuts += 1
    for key, value in extras.items():
        if isinstance(value, str) and len(value) > lim.extra_value:
            extras[key] = _truncate(value, lim.extra_value)
            cuts += 1
    if attrs["exceptions"]:
        for e in attrs["exceptions"]:
            for k in ("type", "message"):
                if len(e[k]) > lim.field:
                    e[k] = _truncate(e[k], lim.field)
                    cuts += 1
    return cuts


def _check_extras(extras: dict[str, Any], lim: Limits) -> tuple[dict[str, Any], int]:
    """Reject shadowing names; rename fabric names; keep at most ``lim.extras``."""
    out: dict[str, Any] = {}
    dropped = 0
    for key, value in extras.items():
        if not isinstance(key, str) or not key or len(key) > 256:
            raise MalformedRecord(f"extra name must be a non-empty str of at most 256 chars, got {key!r:.80}")
        if key in FORBIDDEN:
            raise MalformedRecord(f"extra {key!r} would shadow a LogRecord attribute")
        if len(out) >= lim.extras:
            dropped += 1
            continue
        out[f"extra_{key}" if key in FABRIC_ATTRIBUTES else key] = value
    return out, dropped


# Topics already checked -> the (levelno, name, service) that made them: a record
# with the same three needs no new topic built. Only entries made by a check
# that passed, only short topics, at most _TOPICS_LIMIT of them (about 2 MB).
_TOPICS: dict[bytes, tuple[int, str, str]] = {}
_TOPICS_LIMIT = 4096
_TOPICS_MAX_BYTES = 256


def check_topic(topic: bytes | None, attrs: Mapping[str, Any], expected: bytes | None = None) -> None:
    """Reject a record whose topic is not the one its level, logger and service make.

    ``expected``, when the caller knows it, is the topic ``attrs`` make.
    """
    if topic is None:
        return
    if expected is None:
        fields = (attrs["levelno"], attrs["name"], attrs["service"])
        if _TOPICS.get(topic) == fields:
            return
        expected = make_topic(*fields)
        if topic == expected and len(topic) <= _TOPICS_MAX_BYTES:
            if len(_TOPICS) >= _TOPICS_LIMIT:
                _TOPICS.clear()
            _TOPICS[topic] = fields
    if topic != expected:
        raise MalformedRecord(
            f"topic {topic[:60]!r} does not match the record: its level, logger and service "
            f"make the topic {expected[:60]!r}"
        )


def finish(
    attrs: dict[str, Any],
    extras: dict[str, Any],
    size: int,
    lim: Limits,
    producer_id: int,
    seq: int,
    topic: bytes | None,
) -> Decoded:
    """Check, cap and assemble the attributes and extras a reader found in a payload of ``size`` bytes."""
    check_topic(topic, attrs)  # before the caps: the topic was made from the names in full
    cuts = 0
    if extras:
        extras, cuts = _check_extras(extras, lim)
    if size > lim.smallest:  # only then can any one field exceed its cap
        cuts += apply_caps(attrs, extras, lim)
    if extras:
        extras.update(attrs)
        attrs = extras
    record = new_record(ReceivedRecord)
    record.__dict__ = attrs
    return Decoded(record, producer_id, seq, cuts)
