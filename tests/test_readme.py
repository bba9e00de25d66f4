"""README.md: every ```python block runs for real, each in a fresh process, against live local peers.

Each python block is written to ``app.py`` in a fresh temporary directory and run
with this interpreter and this checkout on ``PYTHONPATH``, next to a broker
embedded in the test process and the direct peers a block needs. A block keeps
the addresses a user would type (``tcp://broker:5557``); ``ADDRESSES`` (in
tests/helpers/readme.py) maps each one to the live loopback endpoint of the same role before the block runs.
A block naming any other TCP address fails, so a new block needs a new table
entry rather than a guess.

A comment on the line right before a fence steers that block:

- ``<!-- readme-test: skip (REASON) -->``: not run (a signature, not a program).
  REASON is required. A ``(signature)`` block must still agree with the code.
- ``<!-- readme-test: file NAME -->``: not run; written as ``NAME`` next to every
  block that runs (a configuration file a snippet reads).

A block listed in :data:`CHECKS` runs with a counterpart the test provides (a
producer feeding it, or a subscriber hearing it) and must show what it claims;
any other block (a new one, say) must exit 0 within ``RUN_TIMEOUT`` (20 s).
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import fabric
from tests.helpers.broker import embedded_brokers
from tests.helpers.capture import Capture
from tests.helpers.net import child_env, free_ports, http_get
from tests.helpers.readme import README, Block, Snippet, parse
from tests.helpers.waiting import send_until, wait_until

# A remote message that tries to colour the terminal and forge a second log line.
HOSTILE = "disk \x1b[31mfull\nCRITICAL app.db: forged line"
HOSTILE_SHOWN = "disk \\x1b[31mfull\\nCRITICAL app.db: forged line"

BLOCKS, STRAY = parse(README.read_text())
PYTHON = [b for b in BLOCKS if b.lang == "python"]
RUNNABLE = [b for b in PYTHON if not b.kind]
FILES = [b for b in BLOCKS if b.kind == "file"]


class TestMarkup:
    """The readme-test comments themselves."""

    def test_every_directive_is_well_formed_and_before_a_fence(self) -> None:
        """A readme-test comment that steers nothing is a mistake, not a no-op."""
        assert not STRAY, "malformed or misplaced readme-test comments:\n" + "\n".join(STRAY)

    def test_every_skip_has_a_reason_and_every_block_is_counted(self) -> None:
        """Skips name their reason; python blocks are run, skipped or files, nothing else."""
        skipped = [b for b in PYTHON if b.kind == "skip"]
        for b in skipped:
            assert re.fullmatch(r"\(\s*\S.*\)", b.arg), f"README.md line {b.line}: a skip needs a (reason)"
        for b in BLOCKS:
            assert b.kind in ("", "skip", "file"), f"README.md line {b.line}: unknown directive {b.kind!r}"
            if b.kind == "file":
                assert re.fullmatch(r"[\w.-]+", b.arg), f"README.md line {b.line}: a file needs a plain name"
        assert len(PYTHON) == len(RUNNABLE) + len(skipped) + sum(b.lang == "python" for b in FILES)
        assert len(RUNNABLE) >= len(CHECKS), "fewer runnable blocks than checks"

    def test_every_check_has_its_block(self) -> None:
        """A check whose block moved or vanished would otherwise never run."""
        assert set(CHECKS) <= {b.key for b in RUNNABLE}, set(CHECKS) - {b.key for b in RUNNABLE}

    @pytest.mark.parametrize("block", [b for b in PYTHON if b.arg == "(signature)"], ids=lambda b: b.key)
    def test_signature_blocks_agree_with_the_code(self, block: Block) -> None:
        """Every parameter a signature block names exists, with the default it shows."""
        call, _, params = block.code.partition("(")
        target: Any = fabric
        for part in call.strip().split(".")[1:]:  # fabric.ZmqHandler -> the class
            target = getattr(target, part)
        real = inspect.signature(target).parameters
        shown = ast.parse(f"def f({params.rstrip().removesuffix(')')}): pass").body[0]
        assert isinstance(shown, ast.FunctionDef)
        args = shown.args
        defaults = dict(zip([a.arg for a in args.kwonlyargs], args.kw_defaults, strict=True))
        defaults.update(zip([a.arg for a in args.args][::-1], args.defaults[::-1], strict=False))
        names = [a.arg for a in args.args + args.kwonlyargs] + ([args.vararg.arg] if args.vararg else [])
        for name in names:
            assert name in real, f"README.md line {block.line}: {call.strip()} has no parameter {name!r}"
            if defaults.get(name) is not None:
                # a literal, an expression of literals or a logging constant, from README.md
                value = eval(ast.unparse(defaults[name]), {"__builtins__": {}, "logging": logging})
                assert real[name].default == value, f"{call.strip()}: {name} defaults to {real[name].default!r}"


@dataclass
class Ctx:
    """What a check works with: the live endpoints, the block runner, and handler, logger and listener factories."""

    live: dict[str, str]
    run: Callable[[], Snippet]
    make_handler: Callable[..., fabric.ZmqHandler]
    make_logger: Callable[..., logging.Logger]
    make_listener: Callable[..., fabric.ZmqListener]

    def feeder(
        self, service: str, role: str = "push_ingest", name: str | None = None, **options: Any
    ) -> logging.Logger:
        """A logger (named ``name``, else uniquely) whose records a test-side producer sends to ``role``'s endpoint."""
        return self.make_logger(name, self.make_handler(self.live[role], service=service, **options))

    def hear(self, role: str, *, confirm: bool = True, **options: Any) -> Capture:
        """Records arriving at ``role``'s endpoint; with ``confirm``, once a probe through the broker got there."""
        heard = Capture()
        self.make_listener(self.live[role], heard, **options)
        if confirm:
            probe = self.feeder("readme-probe")
            assert send_until(lambda i: probe.warning("probe %d", i), lambda: heard.named(probe.name), 10.0)
        return heard

    def feed_until_shown(self, logger: logging.Logger, level: int, shown: Callable[[], str], snippet: Snippet) -> None:
        """Send probes at ``level`` until one shows in the block's output (its subscription has arrived)."""
        sent = send_until(lambda i: logger.log(level, "probe %d", i), lambda: "probe " in shown(), 15.0)
        assert sent is not None, f"no record reached the block within 15 s; {snippet.report()}"


def one_record(heard: Capture, name: str, snippet: Snippet, sentinel: logging.Logger) -> logging.LogRecord:
    """The single record of logger ``name`` the block sent; ``sentinel`` logs on the path it took, after it."""
    assert heard.wait_for(1, name=name), f"no record of {name!r} arrived; {snippet.report()}"
    # a duplicate from the block, which has exited, would arrive before a sentinel sent now
    sent = send_until(lambda i: sentinel.warning("sentinel %d", i), lambda: heard.named(sentinel.name), 10.0)
    assert sent is not None, f"no sentinel arrived; {snippet.report()}"
    found = heard.named(name)
    assert len(found) == 1, [r.getMessage() for r in found]
    return found[0]


def assert_escaped(text: str, snippet: Snippet) -> None:
    """The hostile message shows escaped on one line: no raw escape sequence, no forged line."""
    assert HOSTILE_SHOWN in text, snippet.report()
    assert "\x1b" not in text and "\x07" not in text, snippet.report()
    assert not any(line.startswith("CRITICAL app.db: forged") for line in text.splitlines()), snippet.report()


@pytest.fixture(scope="module")
def live() -> Iterator[dict[str, str]]:
    """Live endpoints by role: an embedded broker's, and two free loopback ports for direct wiring."""
    with embedded_brokers(stop_drain=0.5) as make:
        endpoints = dict(make().endpoints)
        collector, producer = free_ports(2)
        endpoints["collector"] = f"tcp://127.0.0.1:{collector}"
        endpoints["producer"] = f"tcp://127.0.0.1:{producer}"
        yield endpoints


@pytest.fixture
def ctx(
    live: dict[str, str],
    tmp_path: Path,
    make_handler: Callable[..., fabric.ZmqHandler],
    make_logger: Callable[..., logging.Logger],
    make_listener: Callable[..., fabric.ZmqListener],
    request: pytest.FixtureRequest,
) -> Iterator[Ctx]:
    """A Ctx whose ``run()`` starts the test's block; the block's process is killed at teardown if still running."""
    started: list[Snippet] = []
    block: Block = request.node.callspec.params["block"]

    def run() -> Snippet:
        started.append(Snippet(block, tmp_path, live, FILES))
        return started[-1]

    yield Ctx(live, run, make_handler, make_logger, make_listener)
    for snippet in started:
        snippet.kill()


# --------------------------------------------------------------------------- what each block claims


def producer_check(role: str, name: str, level: str, message: str, service: str) -> Callable[[Ctx], None]:
    """A block that logs one record: it arrives once, as logged, at ``role``'s endpoint."""

    def check(ctx: Ctx) -> None:
        if role == "egress":
            heard = ctx.hear("egress")
        else:  # the block binds or is bound to directly: the test is its only peer
            mode = {"collector": "pull", "producer": "sub"}[role]
            heard = ctx.hear(role, confirm=False, mode=mode, bind=mode == "pull")
        snippet = ctx.run()
        snippet.finish()
        if role == "egress":  # a producer into the broker, as the block was
            sentinel = ctx.feeder("readme-sentinel")
        elif role == "collector":  # another producer connecting to the listener
            sentinel = ctx.feeder("readme-sentinel", role)
        else:  # a producer binding where the block bound: the listener reconnects to it, on the same pipe
            sentinel = ctx.feeder("readme-sentinel", role, mode="pub", bind=True)
        record = one_record(heard, name, snippet, sentinel)
        assert (record.levelname, record.getMessage(), record.service) == (level, message, service)

    return check


def check_console_listener(ctx: Ctx) -> None:
    """ZmqListener: WARNING and above of app.db and its children reach the console, escaped; Ctrl-C ends it."""
    snippet = ctx.run()
    db = ctx.feeder("checkout", name="app.db")
    web, pool = (ctx.make_logger(name, *db.handlers) for name in ("app.web", "app.db.pool"))
    ctx.feed_until_shown(db, logging.WARNING, snippet.err, snippet)
    db.info("info is below the level")
    web.error("app.web is not subscribed")
    db.warning(HOSTILE)
    pool.error("pool exhausted")
    assert wait_until(lambda: "pool exhausted" in snippet.err(), 10.0), snippet.report()
    snippet.interrupt()
    err = snippet.err()
    assert_escaped(err, snippet)
    assert "below the level" not in err and "not subscribed" not in err, snippet.report()
    assert " checkout " in err and "'received': " in snippet.out(), snippet.report()


def iterator_check(role: str, level: int, service: str = "checkout") -> Callable[[Ctx], None]:
    """subscribe(): records at ``level`` and above are printed escaped; the loop ends on its timeout."""

    def check(ctx: Ctx) -> None:
        options = {"mode": "pub", "bind": True} if role == "producer" else {}
        feed = ctx.feeder(service, role, **options)
        snippet = ctx.run()
        ctx.feed_until_shown(feed, level, snippet.out, snippet)
        feed.log(level - 10, "one level below")
        feed.log(level, HOSTILE)
        snippet.finish()
        assert_escaped(snippet.out(), snippet)
        assert "one level below" not in snippet.out(), snippet.report()

    return check


def check_analyst_script(ctx: Ctx) -> None:
    """For analysts: only checkout's errors, each with its traceback marked and its exception chain, escaped."""
    checkout, billing = ctx.feeder("checkout"), ctx.feeder("billing")
    snippet = ctx.run()
    ctx.feed_until_shown(checkout, logging.ERROR, snippet.out, snippet)
    billing.error("another service")
    checkout.warning("only a warning")
    try:
        raise ValueError("card \x1b]0;pwned\x07 declined")
    except ValueError:
        checkout.exception(HOSTILE)
    snippet.finish()
    out = snippet.out()
    assert_escaped(out, snippet)
    assert "another service" not in out and "only a warning" not in out, snippet.report()
    assert "  | Traceback (most recent call last):" in out, snippet.report()
    assert "   builtins.ValueError card \\x1b]0;pwned\\x07 declined" in out.splitlines(), snippet.report()


def check_collector(ctx: Ctx) -> None:
    """The direct collector: producers' records reach its console, escaped; Ctrl-C ends it."""
    feed = ctx.feeder("worker", "collector")
    snippet = ctx.run()
    ctx.feed_until_shown(feed, logging.INFO, snippet.err, snippet)
    feed.warning(HOSTILE)
    assert wait_until(lambda: "forged line" in snippet.err(), 10.0), snippet.report()
    snippet.interrupt()
    assert_escaped(snippet.err(), snippet)


def check_collector_from_config(ctx: Ctx) -> None:
    """listen_from_config: INFO and above land in fleet.log, escaped, as collector.json says; Ctrl-C ends it."""
    feed = ctx.feeder("checkout")
    snippet = ctx.run()
    log = snippet.cwd / "fleet.log"

    def fleet() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    ctx.feed_until_shown(feed, logging.INFO, fleet, snippet)
    feed.debug("below the listener's level")
    feed.warning(HOSTILE)
    assert wait_until(lambda: "forged line" in fleet(), 10.0), snippet.report() + fleet()
    snippet.interrupt()
    assert_escaped(fleet(), snippet)
    assert "below the listener's level" not in fleet() and " checkout " in fleet()


CHECKS: dict[str, Callable[[Ctx], None]] = {
    "Quick start: producers #1": producer_check("egress", "app", "INFO", "ready on port 8080", "app"),
    "dictConfig #1": producer_check("egress", "checkout.api", "INFO", "order A-17 paid", "checkout"),
    "ZmqListener: remote records into local handlers #1": check_console_listener,
    "subscribe(): remote records as an iterator #1": iterator_check("push_ingest", logging.WARNING),
    "Without a broker #1": check_collector,
    "Without a broker #2": producer_check("collector", "app", "INFO", "hello from a producer", "app"),
    "Without a broker #3": producer_check("producer", "app", "ERROR", "disk full", "app"),
    "Without a broker #4": iterator_check("producer", logging.ERROR),
    "For analysts #1": check_analyst_script,
    "For analysts #2": check_collector_from_config,
}


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.key)
def test_block_runs_and_does_what_it_says(block: Block, ctx: Ctx) -> None:
    """The block runs against live peers and shows what README.md says it does (other blocks: exits 0)."""
    check = CHECKS.get(block.key)
    if check is not None:
        check(ctx)
    else:
        ctx.run().finish()


def test_the_broker_command_line_runs(tmp_path: Path) -> None:
    """README's `logfabric broker ...` line starts a broker that gets ready and exits 0 on SIGTERM."""
    line = next(b for b in BLOCKS if b.code.startswith("logfabric broker ")).code.strip()
    ports = iter(free_ports(8))
    # The same command on free loopback ports: "tcp://*:5557" binds 127.0.0.1 here, "0.0.0.0:9102" too.
    argv = re.sub(
        r"(tcp://\*|0\.0\.0\.0):\d+",
        lambda m: f"{m[1].replace('*', '127.0.0.1').replace('0.0.0.0', '127.0.0.1')}:{next(ports)}",
        line,
    ).split()
    http = argv[argv.index("--http") + 1]
    log = tmp_path / "broker.stderr"
    with log.open("wb") as err:
        proc = subprocess.Popen([str(Path(sys.executable).parent / argv[0]), *argv[1:]], env=child_env(), stderr=err)
    try:
        assert wait_until(lambda: _ready(http), 20.0, 0.05), f"{argv} never got ready:\n{log.read_text()}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        proc.kill()
        proc.wait(10)


def _ready(http: str) -> bool:
    try:
        return http_get(http, "/readyz", timeout=1.0)[0] == 200
    except OSError:
        return False
