"""Every cookbook example under ``examples/`` runs as its own processes and prints what it should.

Each test starts ``examples/NN_name/main.py`` with this interpreter (bounded by
a timeout); the example starts its embedded broker on 127.0.0.1 and its
producer or subscriber processes. Assertions are on the printed output and on
the files the example writes into ``tmp_path``.
"""

from __future__ import annotations

import calendar
import gzip
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: object, timeout: float = 60.0, **env: str) -> str:
    """Run ``examples/<name>/main.py`` from the repository root; return its stdout (it must exit 0)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOGFABRIC_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.update(env)
    command = [sys.executable, str(EXAMPLES / name / "main.py"), *(str(a) for a in args)]
    try:
        done = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{name} did not finish within {timeout} s; stderr:\n{exc.stderr}")
    assert done.returncode == 0, f"{name} exited {done.returncode}; stderr:\n{done.stderr}"
    return done.stdout


def test_every_example_has_a_test_and_a_readme() -> None:
    """Each examples/NN_name folder has main.py, a README.md and a test below."""
    names = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and re.match(r"\d\d_", p.name))
    assert len(names) == 17
    tested = set(re.findall(r'run_example\(\s*"(\d\d_\w+)"', Path(__file__).read_text()))
    for name in names:
        assert (EXAMPLES / name / "main.py").is_file(), name
        assert (EXAMPLES / name / "README.md").is_file(), name
        assert name in tested, f"{name} has no test"


def test_01_multiple_modules() -> None:
    """Child loggers created in another module arrive under their full hierarchy names."""
    assert run_example("01_multiple_modules").splitlines() == [
        "spam: spam_application - INFO - creating an instance of auxiliary_module.Auxiliary",
        "spam: spam_application.auxiliary.Auxiliary - INFO - creating an instance of Auxiliary",
        "spam: spam_application - INFO - created an instance of auxiliary_module.Auxiliary",
        "spam: spam_application - INFO - calling auxiliary_module.Auxiliary.do_something",
        "spam: spam_application.auxiliary.Auxiliary - INFO - doing something",
        "spam: spam_application.auxiliary.Auxiliary - INFO - done doing something (1 + 1 = 2)",
        "spam: spam_application - INFO - finished auxiliary_module.Auxiliary.do_something",
        "spam: spam_application - INFO - calling auxiliary_module.some_function()",
        'spam: spam_application.auxiliary - INFO - received a call to "some_function"',
        "spam: spam_application - INFO - done with auxiliary_module.some_function()",
    ]


def test_02_multiple_threads() -> None:
    """threadName at the subscriber is the producer thread that logged, in that thread's order."""
    lines = run_example("02_multiple_threads").splitlines()
    records, summary = lines[:15], lines[15:]
    seen: dict[str, list[int]] = {}
    for line in records:
        match = re.fullmatch(r"(\S+)\s+(Hello from main|Hi from worker (\d)) \((\d)\)", line)
        assert match, line
        thread, text, worker, i = match.groups()
        assert thread == ("MainThread" if text == "Hello from main" else f"worker-{worker}"), line
        seen.setdefault(thread, []).append(int(i))
    assert seen == {"MainThread": [0, 1, 2, 3, 4], "worker-1": [0, 1, 2, 3, 4], "worker-2": [0, 1, 2, 3, 4]}
    assert summary == ["MainThread: 5 records", "worker-1: 5 records", "worker-2: 5 records"]


def test_03_multiple_destinations(tmp_path: Path) -> None:
    """ERROR and up reach the console handler, everything reaches the file handler, with their own formats."""
    lines = run_example("03_multiple_destinations", tmp_path).splitlines()
    assert lines[:5] == [
        "console (ERROR and up):",
        "simple_example : ERROR    error message",
        "simple_example : CRITICAL critical message",
        "myapp.area2    : ERROR    The five boxing wizards jump quickly.",
        "spam.log (DEBUG and up, 10 lines):",
    ]
    stamp = r"\d\d-\d\d \d\d:\d\d "
    file_lines = (tmp_path / "spam.log").read_text().splitlines()
    assert lines[5:] == file_lines
    assert all(re.match(stamp, line) for line in file_lines)
    assert [re.sub(stamp, "", line, count=1) for line in file_lines] == [
        "simple_example  DEBUG    debug message",
        "simple_example  INFO     info message",
        "simple_example  WARNING  warn message",
        "simple_example  ERROR    error message",
        "simple_example  CRITICAL critical message",
        "root            INFO     Jackdaws love my big sphinx of quartz.",
        "myapp.area1     DEBUG    Quick zephyrs blow, vexing daft Jim.",
        "myapp.area1     INFO     How quickly daft jumping zebras vex.",
        "myapp.area2     WARNING  Jail zesty vixen who grabbed pay from quack.",
        "myapp.area2     ERROR    The five boxing wizards jump quickly.",
    ]


def test_04_blocking_handlers() -> None:
    """A 20 ms handler on the subscriber leaves the producer's calls in microseconds; in the producer it costs 20 ms."""
    out = run_example("04_blocking_handlers")
    figures = {
        label: float(value)
        for label, value in re.findall(r"^producer, (.+?):\s+([\d.]+) us/call$", out, flags=re.MULTILINE)
    }
    fast = figures["subscriber handler fast"]
    slow = figures["subscriber handler 20 ms/record"]
    direct = figures["20 ms handler in the producer"]
    assert direct >= 19_000  # each call sleeps 20 ms when the handler is local
    assert slow < 2_000 and fast < 2_000, figures  # through the fabric: a tenth of that at the very most
    assert "mails sent by the subscriber: 100 of 100" in out
    producer_done, subscriber_done = map(
        float, re.search(r"producer process finished after ([\d.]+) s, subscriber after ([\d.]+) s", out).groups()
    )
    assert subscriber_done >= 1.0  # 50 mails at 20 ms each
    assert producer_done < subscriber_done


def test_05_network(free_port: Callable[[], int]) -> None:
    """The cookbook's socket client/server pair over a direct PUSH/PULL link: the five records, no pickle."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    assert run_example("05_network", endpoint).splitlines() == [
        f"About to start the receiver on {endpoint}...",
        "client root            INFO     Jackdaws love my big sphinx of quartz.",
        "client myapp.area1     DEBUG    Quick zephyrs blow, vexing daft Jim.",
        "client myapp.area1     INFO     How quickly daft jumping zebras vex.",
        "client myapp.area2     WARNING  Jail zesty vixen who grabbed pay from quack.",
        "client myapp.area2     ERROR    The five boxing wizards jump quickly.",
        "received 5, malformed 0",
    ]


def test_06_contextual_info() -> None:
    """Adapter extras, filter-injected ip/user and a record-factory attribute all fill the subscriber's format."""
    assert run_example("06_contextual_info").splitlines() == [
        "web.request INFO     IP: 10.0.0.7        User: alice  0xdecafbad GET /basket 200",
        "web.conn    WARNING  IP: 10.0.0.8        User: bob    0xdecafbad [c-42] slow client, 750 ms",
        "a.b.c       DEBUG    IP: 123.231.231.123 User: jim    0xdecafbad A debug message",
        "a.b.c       INFO     IP: 127.0.0.1       User: fred   0xdecafbad An info message with some parameters",
        "d.e.f       DEBUG    IP: 192.168.0.1     User: sheila 0xdecafbad A message at DEBUG level with 2 parameters",
        "d.e.f       INFO     IP: 123.231.231.123 User: jim    0xdecafbad A message at INFO level with 2 parameters",
        "d.e.f       WARNING  IP: 127.0.0.1       User: fred   0xdecafbad A message at WARNING level with 2 parameters",
        "d.e.f       ERROR    IP: 192.168.0.1     User: sheila 0xdecafbad A message at ERROR level with 2 parameters",
        "d.e.f       CRITICAL IP: 123.231.231.123 User: jim    0xdecafbad "
        "A message at CRITICAL level with 2 parameters",
    ]


def test_07_single_file_multiprocess(tmp_path: Path) -> None:
    """Fork and spawn workers write one file through one subscriber: exactly 1000 lines, 250 per worker."""
    assert run_example("07_single_file_multiprocess", tmp_path).splitlines() == [
        "mptest.log: 1000 lines, expected 1000",
        "  fork-1: 250 lines",
        "  fork-2: 250 lines",
        "  spawn-3: 250 lines",
        "  spawn-4: 250 lines",
        "gaps 0, malformed 0",
    ]
    lines = (tmp_path / "mptest.log").read_text().splitlines()
    for worker in ("fork-1", "fork-2", "spawn-3", "spawn-4"):
        numbers = [int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(worker + " ")]
        assert numbers == list(range(250)), worker  # complete and in the worker's order


def test_08_rotation_gzip(tmp_path: Path) -> None:
    """The subscriber's RotatingFileHandler rotates every 10 lines into real gzip backups."""
    assert run_example("08_rotation_gzip", tmp_path).splitlines() == [
        "app.log      text   5 lines: 'app INFO record 040' .. 'app INFO record 044'",
        "app.log.1.gz gzip  10 lines: 'app INFO record 030' .. 'app INFO record 039'",
        "app.log.2.gz gzip  10 lines: 'app INFO record 020' .. 'app INFO record 029'",
        "app.log.3.gz gzip  10 lines: 'app INFO record 010' .. 'app INFO record 019'",
        "app.log.4.gz gzip  10 lines: 'app INFO record 000' .. 'app INFO record 009'",
        "45 lines in all, 45 records sent",
    ]
    with gzip.open(tmp_path / "app.log.2.gz", "rt") as f:
        assert f.read() == "".join(f"app INFO record {i:03d}\n" for i in range(20, 30))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log", *(f"app.log.{i}.gz" for i in range(1, 5))]


def test_09_formatting_styles() -> None:
    """Brace/Dollar messages built on the producer, {- and $-style formatters on the subscriber."""
    lines = run_example("09_formatting_styles").splitlines()
    messages = [
        ("foo.bar", "INFO", "Message with 2 placeholders"),
        ("foo.bar", "INFO", "Message with coordinates: (0.50, 0.50)"),
        ("foo.bar", "INFO", "Message with 2 placeholders"),
        ("foo.bar", "ERROR", "This is another, ERROR, message"),
        ("foo.adapter", "DEBUG", "Hello, world!"),
    ]
    expected = []
    for name, level, text in messages:
        expected.append(f"brace:  {name:<11} {level:<8} {text}")
        expected.append(f"dollar: {name} {level} {text} (service styles)")
    assert lines == expected


def test_10_dictconfig(tmp_path: Path) -> None:
    """dictConfig builds the producer's ZmqHandler; a JSON file ('()', custom filter, ext://) the subscriber."""
    assert run_example("10_dictconfig", tmp_path).splitlines() == [
        "subscriber ready",
        "orders-api orders DEBUG [req-1] changed: basket 17 priced",
        "orders-api orders INFO [req-2] changed: order 17 accepted",
        "orders-api orders WARNING [req-4] changed: order 17 paid twice",
        "orders-api orders ERROR [req-5] changed: order 19 payment refused",
        "subscriber received 5 of 5",
        "audit.log (mode 600, WARNING and up):",
        "orders-api orders WARNING [req-4] order 17 paid twice",
        "orders-api orders ERROR [req-5] order 19 payment refused",
    ]
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


def test_11_structured_logging() -> None:
    """logfabric tail -o json, piped to a parser, yields the StructuredMessage data and the typed extras."""
    assert run_example("11_structured_logging").splitlines() == [
        "checkout shop INFO 'message 1'",
        "    message field bar = 'baz' (str)",
        "    message field fnum = 123.456 (float)",
        "    message field foo = 'bar' (str)",
        "    message field num = 123 (int)",
        "checkout shop INFO 'message 2'",
        "    message field set_value = [1, 2, 3] (list)",
        "    message field snowman = '\u2603' (str)",
        "checkout shop INFO 'order placed'",
        "    extra items = ['apple', 'pear'] (list)",
        "    extra order_id = 17 (int)",
        "    extra paid = True (bool)",
        "    extra total = 12.5 (float)",
        "logfabric tail: received 3, shown 3, gaps 0, malformed 0, fallback 0",
    ]


def test_12_exception_formatting(tmp_path: Path) -> None:
    """A traceback from the producer is written on one line by the subscriber's formatter."""
    lines = run_example("12_exception_formatting", tmp_path).splitlines()
    assert lines[0] == "output.txt: 2 lines"
    assert lines[1:] == (tmp_path / "output.txt").read_text().splitlines()
    stamp = r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d"
    assert re.fullmatch(stamp + r"\|INFO\|Sample message\|", lines[1])
    error = re.fullmatch(stamp + r"\|ERROR\|ZeroDivisionError: division by zero\|'(.*)'\|", lines[2])
    assert error, lines[2]
    traceback = error.group(1)
    assert traceback.startswith("Traceback (most recent call last):\\n  File ")
    assert "producer.py" in traceback and "x = 1 / 0" in traceback
    assert traceback.endswith("\\nZeroDivisionError: division by zero")


def test_13_buffer_until_error() -> None:
    """Only the producer that sent an ERROR has its buffered debug history written, in order."""
    assert run_example("13_buffer_until_error").splitlines() == [
        "web-2 DEBUG    Actually logged at DEBUG",
        "web-2 INFO     Actually logged at INFO",
        "web-2 WARNING  Actually logged at WARNING",
        "web-2 ERROR    Actually logged at ERROR",
        "web-2 CRITICAL Actually logged at CRITICAL",
        "web-1: 3 records held back, never written",
    ]


def test_14_utc_timestamps() -> None:
    """The configured UTCFormatter prints the producer's timestamp in UTC, 5:30 behind local time in TZ=IST-5:30."""
    before = time.time()
    lines = run_example("14_utc_timestamps", TZ="IST-5:30").splitlines()
    after = time.time()
    assert len(lines) == 2, lines
    utc = re.fullmatch(r"UTC   (\S+ \S+),\d{3} The local time is (.+)", lines[0])
    local = re.fullmatch(r"local (\S+ \S+),\d{3} The local time is (.+)", lines[1])
    assert utc and local, lines
    assert utc.group(2) == local.group(2)  # one record, two formatters
    utc_time = calendar.timegm(time.strptime(utc.group(1), "%Y-%m-%d %H:%M:%S"))
    local_time = calendar.timegm(time.strptime(local.group(1), "%Y-%m-%d %H:%M:%S"))
    assert local_time - utc_time == 5.5 * 3600
    assert before - 1 <= utc_time <= after  # the UTC line is the real (UTC) time of the event


def test_listener_from_config_works_as_a_context_manager(free_port: Callable[[], int]) -> None:
    """The started listener listen_from_config returns can be used in a with block (as example 14 does)."""
    import fabric

    config = {"version": 1, "listener": {"endpoints": [f"tcp://127.0.0.1:{free_port()}"], "mode": "pull", "bind": True}}
    with fabric.listen_from_config(config) as listener:
        assert listener._thread is not None and listener._thread.is_alive()
    assert listener._thread is None  # stopped at the end of the block


def test_15_selective_logging() -> None:
    """The producer's temporary level change decides what is sent: messages 1, 3, 5 and 6, and no others."""
    assert run_example("15_selective_logging").splitlines() == [
        "subscriber: 1. This should appear just once, at the subscriber.",
        "subscriber: 3. This should appear once, at the subscriber.",
        "subscriber: 5. This should appear twice - at the subscriber and on the producer's stdout.",
        "subscriber: 6. This should appear just once, at the subscriber.",
        "producer stdout: 5. This should appear twice - at the subscriber and on the producer's stdout.",
        "producer: 4 records sent; subscriber: 4 records received",
    ]


def test_16_listener_process(tmp_path: Path) -> None:
    """A listener process (a fabric subscriber) writes the workers' records to its configured files and console."""
    lines = run_example("16_listener_process", tmp_path).splitlines()
    setup = [line for line in lines if line.startswith("setup ")]
    assert [line.split(None, 3)[3] for line in setup] == [
        "About to create listener ...",
        "Started listener",
        "Started worker: worker 1",
        "Started worker: worker 2",
        "Started worker: worker 3",
        "Started worker: worker 4",
        "Telling listener to stop ...",
        "All done.",
    ]
    assert lines[-3:] == [
        "mplog.log: 100 lines, expected 100",
        "mplog-foo.log: 44 lines, expected 44",
        "mplog-errors.log: 47 lines, expected 47",
    ]
    console = [line for line in lines if "listener (for worker " in line]
    assert len(console) == 47  # the listener's console shows ERROR and up
    assert len(lines) == len(setup) + len(console) + 3
    for line in console:
        assert re.fullmatch(r"\S+\s+(ERROR|CRITICAL)\s+listener \(for worker [1-4]\) Message no\. \d+", line), line
    everything = (tmp_path / "mplog.log").read_text().splitlines()
    assert all("listener (for worker " in line for line in everything)
    foo = (tmp_path / "mplog-foo.log").read_text().splitlines()
    assert all(re.search(r" foo(\.\S+)? ", line) for line in foo)


def test_17_configuration_server() -> None:
    """`logfabric level set` turns DEBUG on in both workers of a running service; it expires by itself."""
    assert run_example("17_configuration_server").splitlines() == [
        "before: INFO from 2 workers, DEBUG from 0",
        "logfabric level set shop DEBUG --logger simpleExample --for 2s: exit 0",
        "applied by 2 process(es):",
        "during: DEBUG from 2 workers",
        "each worker says: level of 'simpleExample' back to what it was (expired)",
        "after: DEBUG from 0 workers",
    ]
