"""structlog's event dicts as messages and loguru's blank ``exc_text``, through the real codec.

Every test encodes with :class:`fabric.codec.Encoder` and decodes with
:func:`fabric.codec.decode`, for both codecs. The rule for dict messages is in
:mod:`fabric._structured`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger as loguru_logger

from fabric import _structured, codec
from fabric._record import FORBIDDEN
from fabric._text import safe_str
from fabric.codec import CODECS, Encoder, Limits, ProducerIdentity, decode
from tests.helpers.capture import Capture

IDENTITY = ProducerIdentity(service="shop", host="web-1", pid=4242, producer_id=0x0123456789ABCDEF)
PLAIN = frozenset(logging.makeLogRecord({}).__dict__) | {"taskName"} | codec.FABRIC_ATTRIBUTES

codecs = pytest.mark.parametrize("codec_name", CODECS)


def roundtrip(record: logging.LogRecord, codec_name: str, limits: Limits | None = None) -> logging.LogRecord:
    """Encode ``record`` with the real encoder and decode it again."""
    return decode(Encoder(IDENTITY, codec_name).encode(record, 1), limits).record  # type: ignore[arg-type]


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The attributes of a decoded record that are not standard or the fabric's."""
    return {k: v for k, v in record.__dict__.items() if k not in PLAIN}


def marked(msg: object, args: Any = (), **fields: Any) -> logging.LogRecord:
    """A record as ``wrap_for_formatter`` makes it: the event dict as msg, ``_logger`` and ``_name`` as extras."""
    record = logging.LogRecord("shop.orders", logging.INFO, "/srv/shop/orders.py", 7, msg, args, None, "place")
    record._logger = logging.getLogger("shop.orders")
    record._name = "info"
    record.__dict__.update(fields)
    return record


@pytest.fixture
def kept() -> Iterator[Capture]:
    """A handler on the ``shop`` logger that keeps what structlog or loguru log through the stdlib."""
    keep = Capture()
    shop = logging.getLogger("shop")
    shop.addHandler(keep)
    shop.setLevel(logging.DEBUG)
    try:
        yield keep
    finally:
        shop.removeHandler(keep)
        shop.setLevel(logging.NOTSET)
        structlog.reset_defaults()


def structlog_records(recipe: str, keep: Capture) -> list[logging.LogRecord]:
    """Log one event and one exception through real structlog in ``recipe``; return the stdlib records."""
    last = (
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter
        if recipe == "formatter"
        else structlog.stdlib.render_to_log_kwargs
    )
    structlog.configure(
        processors=[structlog.stdlib.add_logger_name, structlog.stdlib.add_log_level, last],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger("shop.orders").bind(user_id=42)
    log.info("order placed", order=7, amount=10.5, paid=True, tags=["new", "web"], note=None)
    try:
        {}["missing"]
    except KeyError:
        log.exception("order failed", order=-1)
    return keep.records


# --------------------------------------------------------------------------- structlog, both recipes


@codecs
@pytest.mark.parametrize("recipe", ["formatter", "kwargs"])
def test_structlog_key_values_arrive_as_typed_attributes(codec_name: str, recipe: str, kept: Capture) -> None:
    """Both recipes: the event is the message, key-values typed attributes, level and logger the record's."""
    placed, failed = (roundtrip(r, codec_name) for r in structlog_records(recipe, kept))
    assert placed.getMessage() == "order placed"
    assert (placed.name, placed.levelname, placed.levelno) == ("shop.orders", "INFO", logging.INFO)
    assert extras(placed) == {
        "user_id": 42,
        "order": 7,
        "amount": 10.5,
        "paid": True,
        "tags": ["new", "web"],
        "note": None,
        "logger": "shop.orders",
        "level": "info",
    }
    assert type(placed.user_id) is int and type(placed.amount) is float
    assert failed.getMessage() == "order failed" and failed.levelname == "ERROR"
    assert extras(failed) == {"user_id": 42, "order": -1, "logger": "shop.orders", "level": "error"}
    assert failed.exc_text.rstrip().endswith("KeyError: 'missing'")
    assert failed.exceptions[0]["type"] == "builtins.KeyError"


@codecs
def test_the_two_recipes_deliver_the_same_record(codec_name: str, kept: Capture) -> None:
    """wrap_for_formatter and render_to_log_kwargs give the same message, level, logger and attributes."""
    formatter = [roundtrip(r, codec_name) for r in structlog_records("formatter", kept)]
    kept.clear()
    kwargs = [roundtrip(r, codec_name) for r in structlog_records("kwargs", kept)]
    for a, b in zip(formatter, kwargs, strict=True):
        assert (a.getMessage(), a.name, a.levelname) == (b.getMessage(), b.name, b.levelname)
        assert extras(a) == extras(b)


@codecs
def test_the_producers_record_is_left_as_it_was(codec_name: str) -> None:
    """Encoding does not touch the record, so a ProcessorFormatter on another handler still finds its dict."""
    event = {"event": "order placed", "order": 7}
    record = marked(event)
    before = dict(record.__dict__)
    roundtrip(record, codec_name)
    assert record.__dict__ == before and record.msg is event and event == {"event": "order placed", "order": 7}


@codecs
def test_private_keys_and_marks_never_travel(codec_name: str) -> None:
    """_logger, _name, _record, _from_structlog and any _-prefixed key are not shipped."""
    record = marked({"event": "e", "_record": object(), "_from_structlog": True, "_secret": "x", "ok": 1})
    out = roundtrip(record, codec_name)
    assert extras(out) == {"ok": 1}


@codecs
def test_plain_dict_message_keeps_the_stdlib_meaning(codec_name: str) -> None:
    """logger.info({"a": 1}) without structlog's marks: the message is the dict's repr, no attributes."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, {"a": 1, "event": "x"}, (), None)
    out = roundtrip(record, codec_name)
    assert out.getMessage() == "{'a': 1, 'event': 'x'}" == record.getMessage()
    assert extras(out) == {}


@codecs
def test_dict_message_with_args_keeps_the_stdlib_meaning(codec_name: str) -> None:
    """A marked dict with args is not structlog's shape: getMessage() is the message, marks dropped, no key-values."""
    record = marked({"event": "e", "a": 1}, args=({"k": "v"},))
    assert record.args == {"k": "v"}  # the stdlib unpacks one mapping argument
    out = roundtrip(record, codec_name)
    assert out.getMessage() == record.getMessage() == "{'event': 'e', 'a': 1}"
    assert extras(out) == {}


@codecs
def test_dict_message_with_args_that_do_not_fit_raises_like_the_stdlib(codec_name: str) -> None:
    """A dict with args its repr cannot take raises TypeError as getMessage() does (the producer counts an error)."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, {"a": 1}, ("extra",), None)
    with pytest.raises(TypeError):
        Encoder(IDENTITY, codec_name).body(record)  # type: ignore[arg-type]


@codecs
def test_non_string_keys_travel_as_their_str(codec_name: str) -> None:
    """Keys 1, (2, 3) and None arrive as "1", "(2, 3)" and "None"; a name already taken keeps its first value."""
    out = roundtrip(marked({"event": "e", 1: "one", (2, 3): "pair", None: "none", "1": "later"}), codec_name)
    assert extras(out) == {"1": "one", "(2, 3)": "pair", "None": "none"}


@codecs
def test_keys_that_would_shadow_record_attributes_travel_prefixed(codec_name: str) -> None:
    """name, msg, args, levelname, getMessage, message, __dict__ and "" arrive as extra_<key>; the record is intact."""
    keys = ["name", "msg", "args", "levelname", "getMessage", "message", "__dict__", ""]
    event: dict[Any, Any] = {"event": "order placed", **{k: f"v-{k}" for k in keys}}
    out = roundtrip(marked(event), codec_name)
    assert out.getMessage() == "order placed" and out.name == "shop.orders" and out.levelname == "INFO"
    assert extras(out) == {f"extra_{k}": f"v-{k}" for k in keys if not k.startswith("_")}


@codecs
def test_fabric_attribute_names_arrive_renamed(codec_name: str) -> None:
    """Keys named like fabric attributes (service, seq) arrive as extra_service and extra_seq."""
    out = roundtrip(marked({"event": "e", "service": "other", "seq": 99}), codec_name)
    assert (out.service, out.seq) == ("shop", 1)
    assert extras(out) == {"extra_service": "other", "extra_seq": 99}


@codecs
def test_record_extras_win_over_event_keys(codec_name: str) -> None:
    """An extra the record already has (a trace id stamped by the handler, say) is not replaced by a key."""
    out = roundtrip(marked({"event": "e", "otelTraceID": "from-event"}, otelTraceID="stamped"), codec_name)
    assert out.otelTraceID == "stamped"


@codecs
def test_event_missing_or_not_a_string(codec_name: str) -> None:
    """No event gives an empty message; a non-str event its str(); a broken __str__ a placeholder."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert roundtrip(marked({"a": 1}), codec_name).getMessage() == ""
    assert roundtrip(marked({"event": 42}), codec_name).getMessage() == "42"
    assert roundtrip(marked({"event": Broken()}), codec_name).getMessage() == "<unprintable Broken: RuntimeError>"


@codecs
def test_a_message_with_percent_signs_is_not_formatted(codec_name: str) -> None:
    """The event is taken as it is: a % in it is not an argument placeholder."""
    assert roundtrip(marked({"event": "100% of %s"}), codec_name).getMessage() == "100% of %s"


@codecs
def test_huge_values_and_names_are_capped(codec_name: str) -> None:
    """A 1 MB value is cut by the listener's caps, a 1000-char name to 256 chars, keys beyond the limit dropped."""
    big = decode(
        Encoder(IDENTITY, codec_name).encode(marked({"event": "e", "blob": "x" * 1_000_000, "k" * 1000: 1}), 1)
    )  # type: ignore[arg-type]
    blob = big.record.blob
    assert blob.startswith("x" * 100) and "truncated" in blob and len(blob) < 20_000
    assert extras(big.record)["k" * 256] == 1 and big.truncated == 1
    many = decode(
        Encoder(IDENTITY, codec_name).encode(marked({"event": "e"} | {f"key{n:03d}": n for n in range(200)}), 1)
    )  # type: ignore[arg-type]
    assert len(extras(many.record)) == Limits().extras and many.truncated == 200 - Limits().extras


@codecs
def test_deeply_nested_and_cyclic_values_arrive_as_text(codec_name: str) -> None:
    """A value 100 000 levels deep or cyclic never fails the record: it arrives as a placeholder or repr."""
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    out = roundtrip(marked({"event": "e", "deep": deep, "cyclic": cyclic, "fine": {"b": [1, 2]}}), codec_name)
    assert out.getMessage() == "e"
    assert out.deep == "<unrepresentable list: RecursionError>"
    assert out.cyclic == "{'a': 1, 'self': {...}}"
    assert out.fine == {"b": [1, 2]}


@codecs
def test_lone_surrogates_in_keys_values_and_event_travel_escaped(codec_name: str) -> None:
    """Undecodable text anywhere in the event dict takes the scrub path: escaped, nothing lost."""
    out = roundtrip(marked({"event": "caf\udce9", "file\udce9": "x\udce9", "ok": 1}), codec_name)
    assert out.getMessage() == "caf\\udce9"
    assert extras(out) == {"file\\udce9": "x\\udce9", "ok": 1}


@codecs
def test_hostile_mapping_keeps_the_stdlib_meaning(codec_name: str) -> None:
    """A mapping whose items() raises: the record is encoded as the stdlib would print it, marks dropped."""

    class Hostile(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("no iteration")

        def __len__(self) -> int:
            return 1

        def __repr__(self) -> str:
            return "<Hostile>"

    out = roundtrip(marked(Hostile()), codec_name)
    assert out.getMessage() == "<Hostile>" and extras(out) == {}


@codecs
def test_exc_info_in_the_event_dict_gives_the_traceback(codec_name: str) -> None:
    """exc_info=True (during handling) or an exception in the event dict: the traceback travels, not an attribute."""
    try:
        raise ValueError("bad order")
    except ValueError as exc:
        during = roundtrip(marked({"event": "e", "exc_info": True}), codec_name)
        caught = exc
    after = roundtrip(marked({"event": "e", "exc_info": caught}), codec_name)
    for out in (during, after):
        assert out.exc_text.rstrip().endswith("ValueError: bad order")
        assert out.exceptions[0]["type"] == "builtins.ValueError"
        assert extras(out) == {}
    nothing = roundtrip(marked({"event": "e", "exc_info": True}), codec_name)  # nothing being handled
    assert nothing.exc_text is None and extras(nothing) == {}


@codecs
def test_stack_info_text_and_stacklevel_are_logging_arguments(codec_name: str) -> None:
    """A stack_info text becomes the record's stack; stacklevel and stack_info=True are not attributes."""
    out = roundtrip(
        marked({"event": "e", "stack_info": "Stack (most recent call last):\n  here", "stacklevel": 2}), codec_name
    )
    assert out.stack_info == "Stack (most recent call last):\n  here" and extras(out) == {}
    assert extras(roundtrip(marked({"event": "e", "stack_info": True}), codec_name)) == {}


_text = st.text(st.characters() | st.just("\udce9"), max_size=12)  # a lone surrogate now and then
_keys = st.one_of(_text, st.sampled_from(["name", "msg", "args", "exc_info", "_x", "service"]), st.integers())
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(event=st.dictionaries(_keys, _values, max_size=12), message=_text, codec_name=st.sampled_from(CODECS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_event_dict_arrives_as_a_valid_record(event: dict[Any, Any], message: str, codec_name: str) -> None:
    """Any event dict (odd keys, nested values, lone surrogates): the record decodes, the event is its message."""
    out = roundtrip(marked({**event, "event": message}), codec_name)
    assert out.getMessage() == message.encode("utf-8", "backslashreplace").decode()
    assert (out.name, out.levelname) == ("shop.orders", "INFO")
    assert not [k for k in extras(out) if k.startswith("_") or k in ("exc_info", "msg", "args")]


def test_flatten_returns_a_str_message_record_itself() -> None:
    """A record without structlog's marks comes back as the same object (no copy)."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, {"a": 1}, (), None)
    assert _structured.flatten(record, FORBIDDEN, safe_str) is record


# --------------------------------------------------------------------------- loguru's blank exc_text


def _failing_record(exc_text: str | None) -> logging.LogRecord:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        info = sys.exc_info()
    record = logging.LogRecord("shop", logging.ERROR, __file__, 1, "payment failed", (), info)
    record.exc_text = exc_text
    return record


@codecs
@pytest.mark.parametrize("blank", ["\n", " ", "\r\n\t"])
def test_blank_exc_text_does_not_replace_the_real_traceback(codec_name: str, blank: str) -> None:
    """A whitespace-only exc_text with exc_info: the traceback is formatted from exc_info; the record keeps its text."""
    record = _failing_record(blank)
    out = roundtrip(record, codec_name)
    assert out.exc_text.startswith("Traceback (most recent call last):")
    assert out.exc_text.rstrip().endswith("ZeroDivisionError: division by zero")
    assert out.exceptions[0]["type"] == "builtins.ZeroDivisionError"
    assert record.exc_text == blank  # loguru's placeholder stays, for the other handlers


@codecs
def test_a_real_exc_text_is_kept_as_it_is(codec_name: str) -> None:
    """A non-blank exc_text (formatted by the producer's own formatter) travels unchanged."""
    assert roundtrip(_failing_record("custom traceback"), codec_name).exc_text == "custom traceback"


@codecs
def test_blank_exc_text_without_exc_info_travels_unchanged(codec_name: str) -> None:
    """With no exception to format, the exc_text the record has is what travels."""
    record = logging.LogRecord("shop", logging.ERROR, __file__, 1, "m", (), None)
    record.exc_text = "\n"
    assert roundtrip(record, codec_name).exc_text == "\n"


@codecs
def test_blank_exc_text_with_an_unencodable_traceback_takes_the_scrub_path(codec_name: str) -> None:
    """A traceback holding a lone surrogate, behind a blank exc_text, arrives escaped."""
    try:
        raise OSError("bad file caf\udce9")
    except OSError:
        record = logging.LogRecord("shop", logging.ERROR, __file__, 1, "m", (), sys.exc_info())
    record.exc_text = "\n"
    out = roundtrip(record, codec_name)
    assert out.exc_text.rstrip().endswith("OSError: bad file caf\\udce9")


@codecs
def test_loguru_exception_arrives_with_its_real_traceback(codec_name: str, kept: Capture) -> None:
    """Real loguru propagated into the stdlib: logger.exception's record carries the real traceback."""

    class Propagate(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logging.getLogger(record.name).handle(record)

    sink = loguru_logger.add(Propagate(), format="{message}")
    try:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            loguru_logger.patch(lambda r: r.update(name="shop")).exception("payment failed")
    finally:
        loguru_logger.remove(sink)
    (record,) = kept.records
    assert record.exc_text == "\n"  # loguru's placeholder, as sent
    out = roundtrip(record, codec_name)
    assert out.exc_text.startswith("Traceback (most recent call last):")
    assert out.exc_text.rstrip().endswith("ZeroDivisionError: division by zero")
