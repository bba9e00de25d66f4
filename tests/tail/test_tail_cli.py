"""``logfabric tail`` as a subprocess against a real broker (see conftest.py for the harness).

Each test streams records into the broker until the tail exits on its own
(``--count``), so what it printed is a consecutive run of what was sent: a
record sent between two printed ones and not printed itself was filtered.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

SUMMARY = re.compile(r"^logfabric tail: received (\d+), shown (\d+), gaps (\d+), malformed (\d+), fallback (\d+)$")
# DEFAULT_FORMAT: "%(asctime)s %(service)s %(levelname)-8s %(name)s: %(message)s"
DEFAULT_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\S+) (\S+) +(\S+): (.*)$")
IST = 5.5 * 3600  # the offset of TZ=XST-05:30


def numbers(lines: list[str], pattern: str) -> list[int]:
    """The integers that ``pattern`` (one group) captures, line by line; every line must match."""
    found = []
    for line in lines:
        m = re.search(pattern, line)
        assert m, f"unexpected line {line!r}"
        found.append(int(m.group(1)))
    return found


def summary(stderr: str) -> tuple[int, int, int, int, int]:
    """The counters of the one summary line on stderr."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one summary line on stderr, got:\n{stderr}"
    m = SUMMARY.match(lines[0])
    assert m, f"not a summary line: {lines[0]!r}"
    return tuple(int(g) for g in m.groups())  # type: ignore[return-value]


def expected_asctime(created: float, msecs: float, offset: float = 0.0) -> str:
    """What logging.Formatter prints for ``created`` in a zone ``offset`` seconds east of UTC."""
    return "{},{:03d}".format(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created + offset)), int(msecs))


class TestTextOutput:
    """Text lines: the default format, custom formats in every style, and UTC timestamps."""

    def test_default_format_shows_time_service_level_logger_and_message(self, tail_cli, tail_producer):
        """The default line is 'asctime service LEVEL logger: message'."""
        producer = tail_producer()
        log = producer.logger("app")
        result = tail_cli.start("--count", "2").stream(lambda i: log.warning("hello %d", i))
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 2, result.describe()
        for line in result.lines:
            m = DEFAULT_LINE.match(line)
            assert m, f"line does not follow the default format: {line!r}"
            assert m.group(2, 3, 4) == (producer.service, "WARNING", log.name)
            assert re.fullmatch(r"hello \d+", m.group(5))
        first, second = numbers(result.lines, r"hello (\d+)$")
        assert second == first + 1

    def test_percent_format(self, tail_cli, tail_producer):
        """-f takes a %-style logging format naming any record attribute, extras included."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "1", "-f", "%(levelno)s|%(name)s|%(service)s|%(user)s|%(message)s")
        result = tail.stream(lambda i: log.error("pct %d", i, extra={"user": "bob"}))
        assert result.returncode == 0, result.describe()
        [line] = result.lines
        assert re.fullmatch(rf"40\|{re.escape(log.name)}\|{producer.service}\|bob\|pct \d+", line), line

    def test_brace_style_format(self, tail_cli, tail_producer):
        """--style '{' formats with str.format fields."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "1", "--format", "{levelname}:{service}:{name}:{message}", "--style", "{")
        result = tail.stream(lambda i: log.info("brace %d", i))
        assert result.returncode == 0, result.describe()
        [line] = result.lines
        assert re.fullmatch(rf"INFO:{producer.service}:{re.escape(log.name)}:brace \d+", line), line

    def test_dollar_style_format(self, tail_cli, tail_producer):
        """--style '$' formats with string.Template fields."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "1", "-f", "${levelname}/${name}/${message}", "--style", "$")
        result = tail.stream(lambda i: log.warning("dollar %d", i))
        assert result.returncode == 0, result.describe()
        [line] = result.lines
        assert re.fullmatch(rf"WARNING/{re.escape(log.name)}/dollar \d+", line), line

    def test_utc_prints_asctime_in_utc(self, tail_cli, tail_producer, tail_env):
        """--utc formats asctime from the record's created time in UTC, whatever the local zone."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "2", "-f", "%(asctime)s|%(message)s", "--utc", env=tail_env(TZ="XST-05:30"))
        result = tail.stream(lambda i: log.info("utc %d", i))
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 2, result.describe()
        for line in result.lines:
            asctime, message = line.split("|")
            created, msecs = producer.created.times[message]
            assert asctime == expected_asctime(created, msecs), f"{line!r} is not UTC"

    def test_without_utc_asctime_is_local_time(self, tail_cli, tail_producer, tail_env):
        """Without --utc, asctime is the tail's local time (the control for the --utc test)."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "1", "-f", "%(asctime)s|%(message)s", env=tail_env(TZ="XST-05:30"))
        result = tail.stream(lambda i: log.info("local %d", i))
        assert result.returncode == 0, result.describe()
        [line] = result.lines
        asctime, message = line.split("|")
        created, msecs = producer.created.times[message]
        assert asctime == expected_asctime(created, msecs, IST)
        assert asctime != expected_asctime(created, msecs)

    def test_format_field_missing_from_a_record_does_not_crash(self, tail_cli, tail_producer):
        """A record lacking an extra that --format names renders it as '-' instead of crashing the tail."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "2", "-f", "%(user)s %(message)s")
        result = tail.stream(lambda i: log.info("maybe %d", i, extra={"user": "bob"} if i % 2 else {}))
        assert "Traceback" not in result.stderr, result.describe()
        assert result.returncode == 0, result.describe()
        lines = result.lines
        assert len(lines) == 2, result.describe()
        for line in lines:  # consecutive records, so one of each kind
            user, _, n = line.split()
            assert user == ("bob" if int(n) % 2 else "-"), result.describe()
        assert {line.split()[0] for line in lines} == {"bob", "-"}, result.describe()


class TestJsonOutput:
    """-o json: one JSON object per record per line."""

    def test_one_object_per_line_with_record_fields_and_extras(self, tail_cli, tail_producer):
        """Each line parses alone and carries the record's fields, the fabric's and the extras."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "3", "-o", "json")
        result = tail.stream(lambda i: log.warning("json %d\nsecond line", i, extra={"user": "bob", "attempt": 3}))
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 3, result.describe()
        for line in result.lines:
            doc = json.loads(line)
            assert isinstance(doc, dict)
            assert doc["name"] == log.name
            assert (doc["levelname"], doc["levelno"]) == ("WARNING", 30)
            assert re.fullmatch(r"json \d+\nsecond line", doc["message"])
            assert doc["created"] == pytest.approx(producer.created.times[doc["message"]][0], abs=1e-6)
            assert doc["service"] == producer.service
            assert doc["host"] == socket.gethostname()
            assert doc["process"] == os.getpid()
            assert doc["exc_text"] is None
            assert doc["user"] == "bob"
            assert doc["attempt"] == 3

    def test_exception_text_travels_in_json(self, tail_cli, tail_producer):
        """A logged exception arrives as exc_text (the formatted traceback) in the JSON object."""
        producer = tail_producer()
        log = producer.logger("app")

        def emit(i: int) -> None:
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                log.exception("failed %d", i)

        result = tail_cli.start("--count", "1", "-o", "json").stream(emit)
        assert result.returncode == 0, result.describe()
        [line] = result.lines
        doc = json.loads(line)
        assert re.fullmatch(r"failed \d+", doc["message"])
        assert doc["exc_text"].startswith("Traceback (most recent call last):")
        assert doc["exc_text"].endswith("ZeroDivisionError: division by zero")
        assert doc["levelname"] == "ERROR"


class TestFilters:
    """--logger, --level, --service and --grep select records; everything else is not printed."""

    def test_logger_prefix_matches_the_logger_and_its_descendants_only(self, tail_cli, tail_producer):
        """-l app.db prints app.db and app.db.pool, not app.dbx nor app."""
        producer = tail_producer()
        loggers = [producer.logger(s) for s in ("app.dbx", "app.db.pool", "app", "app.db")]
        tail = tail_cli.start("--count", "6", "-l", f"{producer.prefix}.app.db", "-f", "%(name)s %(message)s")
        result = tail.stream(lambda i: [lg.info("n %d", i) for lg in loggers])
        assert result.returncode == 0, result.describe()
        names = [line.split(" ")[0] for line in result.lines]
        assert len(names) == 6, result.describe()
        assert set(names) == {f"{producer.prefix}.app.db", f"{producer.prefix}.app.db.pool"}

    def test_logger_option_is_repeatable(self, tail_cli, tail_producer):
        """Several -l options print the union of their prefixes."""
        producer = tail_producer()
        loggers = [producer.logger(s) for s in ("a", "b", "c")]
        tail = tail_cli.start(
            "-c", "6", "-l", f"{producer.prefix}.a", "--logger", f"{producer.prefix}.b", "-f", "%(name)s"
        )
        result = tail.stream(lambda i: [lg.info("n %d", i) for lg in loggers])
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 6, result.describe()
        assert set(result.lines) == {f"{producer.prefix}.a", f"{producer.prefix}.b"}

    def test_level_by_name(self, tail_cli, tail_producer):
        """--level warning (any case) prints WARNING and above only."""
        producer = tail_producer()
        log = producer.logger("app")
        levels = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
        tail = tail_cli.start("--count", "6", "--level", "warning", "-f", "%(levelno)s")
        result = tail.stream(lambda i: [log.log(lv, "n %d", i) for lv in levels])
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 6, result.describe()
        assert {int(x) for x in result.lines} == {30, 40, 50}

    def test_level_by_number_with_a_custom_level(self, tail_cli, tail_producer):
        """--level 25 prints 25 and above, not 24 (same topic bucket) nor 20."""
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "6", "--level", "25", "-f", "%(levelno)s %(levelname)s")
        result = tail.stream(lambda i: [log.log(lv, "n %d", i) for lv in (20, 24, 25, 30)])
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 6, result.describe()
        assert set(result.lines) == {"25 Level 25", "30 WARNING"}

    def test_service_option_is_repeatable(self, tail_cli, tail_producer):
        """-s A -s B prints records from services A and B, none from C."""
        a, b, c = tail_producer(), tail_producer(), tail_producer()
        loggers = [p.logger("app") for p in (c, a, b)]
        tail = tail_cli.start("--count", "8", "-s", a.service, "--service", b.service, "-f", "%(service)s")
        result = tail.stream(lambda i: [lg.info("n %d", i) for lg in loggers], interval=0.02)
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 8, result.describe()
        assert set(result.lines) == {a.service, b.service}

    def test_grep_matches_the_message_as_a_regex(self, tail_cli, tail_producer):
        """-g REGEX prints only records whose (merged) message matches the pattern."""
        producer = tail_producer()
        log = producer.logger("app")
        events = ("created", "paid", "shipped", "refunded")
        tail = tail_cli.start("--count", "4", "-g", r"^order \d+ (paid|refunded)$", "-f", "%(message)s")
        result = tail.stream(lambda i: [log.info("order %d %s", i, e) for e in events])
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 4, result.describe()
        assert {line.split(" ")[2] for line in result.lines} == {"paid", "refunded"}
        received, shown, *_ = summary(result.stderr)
        assert shown == 4
        assert received > shown  # grep runs on received records: the skipped ones were counted as received


class TestCount:
    """--count N: exit 0 after N records, with a one-line summary on stderr."""

    def test_exits_after_n_records_with_a_summary(self, tail_cli, tail_producer):
        """--count 5 prints five consecutive records, exits 0 and reports received/shown/gaps/malformed/fallback."""
        producer = tail_producer()
        log = producer.logger("app")
        result = tail_cli.start("--count", "5", "-f", "%(message)s").stream(lambda i: log.info("rec %d", i))
        assert result.returncode == 0, result.describe()
        got = numbers(result.lines, r"^rec (\d+)$")
        assert len(got) == 5
        assert got == list(range(got[0], got[0] + 5))
        assert summary(result.stderr) == (5, 5, 0, 0, 0)

    def test_console_script_runs_the_tail(self, tail_cli, tail_producer):
        """The installed 'logfabric tail' entry point behaves like python -m fabric.cli tail."""
        script = Path(sys.executable).parent / "logfabric"
        if not script.exists():
            pytest.skip(f"no console script at {script}")
        producer = tail_producer()
        log = producer.logger("app")
        tail = tail_cli.start("--count", "1", "-f", "%(message)s", argv0=[str(script), "tail"])
        result = tail.stream(lambda i: log.info("script %d", i))
        assert result.returncode == 0, result.describe()
        assert re.fullmatch(r"script \d+", result.lines[0])
        assert summary(result.stderr)[:2] == (1, 1)

    def test_endpoint_defaults_to_logfabric_subscribe(self, tail_cli, tail_producer, tail_env):
        """Without an ENDPOINT argument the tail subscribes to $LOGFABRIC_SUBSCRIBE."""
        producer = tail_producer()
        log = producer.logger("app")
        env = tail_env(LOGFABRIC_SUBSCRIBE=tail_cli.egress)
        tail = tail_cli.start("--count", "1", "-f", "%(message)s", endpoint=False, env=env)
        result = tail.stream(lambda i: log.info("env %d", i))
        assert result.returncode == 0, result.describe()
        assert re.fullmatch(r"env \d+", result.lines[0])

    def test_gap_notices_are_printed_counted_and_not_part_of_the_count(self, tail_cli, tail_producer):
        """Lost records show as 'logfabric.gaps' WARNING lines, add to 'gaps', and do not count toward --count."""
        producer = tail_producer(max_message=4096)
        log = producer.logger("app")

        def emit(i: int) -> None:
            if i % 2:
                log.info("x" * 5000)  # over max_message: not sent, but its sequence number is used
            else:
                log.info("rec %d", i)

        tail = tail_cli.start("--count", "3", "-f", "%(name)s|%(levelname)s|%(message)s")
        result = tail.stream(emit)
        assert result.returncode == 0, result.describe()
        assert len(result.lines) == 5, result.describe()
        records, notices = result.lines[0::2], result.lines[1::2]
        assert all(re.fullmatch(rf"{re.escape(log.name)}\|INFO\|rec \d*[02468]", x) for x in records), records
        for notice in notices:
            assert notice.startswith("logfabric.gaps|WARNING|lost 1 record(s) from service "), notice
        assert summary(result.stderr) == (3, 3, 2, 0, 0)


class TestEnding:
    """The other normal endings: Ctrl-C and a reader of stdout that went away both exit 0 quietly."""

    def test_ctrl_c_exits_0_with_the_summary(self, tail_cli, tail_producer):
        """SIGINT ends the tail with status 0, its summary and no traceback."""
        log = tail_producer().logger("app")
        tail = tail_cli.start("-f", "%(message)s")
        tail.stream_until_output(lambda i: log.info("int %d", i))
        tail.proc.send_signal(signal.SIGINT)
        result = tail.finish(timeout=10)
        assert result.returncode == 0, result.describe()
        assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.describe()
        received, shown, *_ = summary(result.stderr)
        assert received == shown == len(result.lines) >= 1

    @pytest.mark.parametrize("output", ["text", "json"])
    def test_reader_going_away_exits_0_quietly(self, tail_cli, tail_producer, output):
        """When the reader of stdout closes it (like '| head -1'), the tail exits 0 without a traceback."""
        log = tail_producer().logger("app")
        tail = tail_cli.start("-o", output)
        tail.stream_until_output(lambda i: log.info("pipe %d", i))
        assert tail.proc.stdout is not None
        tail.proc.stdout.close()
        tail.proc.stdout = None
        result = tail.stream(lambda i: log.info("more %d", i))
        assert result.returncode == 0, result.describe()
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.describe()
        assert summary(result.stderr)[0] >= 1


class TestTimeout:
    """--timeout SECONDS: exit 0 once no record has arrived for that long."""

    def test_exits_after_timeout_without_records(self, tail_cli, tail_unique):
        """With nothing to receive, --timeout 1 exits 0 after about a second."""
        begun = time.monotonic()
        tail = tail_cli.start("--timeout", "1", "-l", tail_unique("nobody"))
        result = tail.finish(timeout=15)
        elapsed = time.monotonic() - begun
        assert result.returncode == 0, result.describe()
        assert 1.0 <= elapsed < 5.0, f"exited after {elapsed:.2f} s"
        assert result.stdout == b""
        assert summary(result.stderr) == (0, 0, 0, 0, 0)

    def test_records_keep_the_tail_alive(self, tail_cli, tail_producer):
        """The timeout counts from the last record, not from the start: records for 2.5 s keep a 1 s tail running."""
        log = tail_producer().logger("app")
        tail = tail_cli.start("--timeout", "1", "-f", "%(message)s")
        tail.stream_until_output(lambda i: log.info("first %d", i))
        deadline, sent = time.monotonic() + 2.5, 0
        while time.monotonic() < deadline and tail.proc.poll() is None:
            log.info("alive %d", sent)
            sent += 1
            time.sleep(0.02)  # a duration: records keep coming for 2.5 s
        assert tail.proc.poll() is None, "the tail stopped while records were arriving"
        stopped = time.monotonic()
        result = tail.finish(timeout=10)
        waited = time.monotonic() - stopped
        assert result.returncode == 0, result.describe()
        assert 0.8 <= waited < 2.5, f"exited {waited:.2f} s after the last record"
        alive = numbers([x for x in result.lines if x.startswith("alive")], r"^alive (\d+)$")
        assert alive == list(range(sent)), result.describe()


class TestConfigFile:
    """--config FILE: records go to the handlers of a local logging configuration."""

    RECORD = "record %04d " + "x" * 28  # 40 characters, 41 bytes a line

    def write_json(self, path: Path, handler: dict[str, object], **extra: object) -> Path:
        config = {
            "version": 1,
            "formatters": {"plain": {"format": "%(message)s"}},
            "handlers": {"out": {**handler, "formatter": "plain"}},
            "root": {"level": "DEBUG", "handlers": ["out"]},
            **extra,
        }
        path.write_text(json.dumps(config))
        return path

    def test_rotating_file_handler_rotates_and_keeps_every_record(self, tail_cli, tail_producer, tmp_path):
        """A RotatingFileHandler (maxBytes 100, backupCount 3) ends with name.1-3 holding all 8 records."""
        log_file = tmp_path / "fleet.log"
        handler = {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(log_file),
            "maxBytes": 100,
            "backupCount": 3,
            "encoding": "utf-8",
        }
        config = self.write_json(tmp_path / "tail.json", handler)
        log = tail_producer().logger("app")
        result = tail_cli.start("--count", "8", "--config", str(config)).stream(lambda i: log.info(self.RECORD, i))
        assert result.returncode == 0, result.describe()
        assert result.stdout == b"", "with --config records go to the handlers, not stdout"
        files = [Path(f"{log_file}.{n}") for n in (3, 2, 1)] + [log_file]
        for f in files:
            assert f.exists(), f"{f.name} missing; present: {sorted(p.name for p in tmp_path.iterdir())}"
            assert len(f.read_text().splitlines()) == 2, f"{f.name}: {f.read_text()!r}"
        assert not Path(f"{log_file}.4").exists()
        lines = [line for f in files for line in f.read_text().splitlines()]
        got = numbers(lines, r"^record (\d{4}) x{28}$")
        assert got == list(range(got[0], got[0] + 8))
        assert summary(result.stderr) == (8, 8, 0, 0, 0)

    def test_gzip_rotator_from_a_factory(self, tail_cli, tail_producer, tmp_path):
        """A '()' factory handler with the cookbook gzip namer/rotator leaves name.N.gz backups holding the records."""
        log_file = tmp_path / "fleet.log"
        handler = {
            "()": "tail_gzip_rotation.rotating_gzip_handler",
            "filename": str(log_file),
            "maxBytes": 100,
            "backupCount": 3,
        }
        config = self.write_json(tmp_path / "tail.json", handler)
        log = tail_producer().logger("app")
        result = tail_cli.start("--count", "8", "--config", str(config)).stream(lambda i: log.info(self.RECORD, i))
        assert result.returncode == 0, result.describe()
        backups = [Path(f"{log_file}.{n}.gz") for n in (3, 2, 1)]
        for f in backups:
            assert f.exists(), f"{f.name} missing; present: {sorted(p.name for p in tmp_path.iterdir())}"
        assert not Path(f"{log_file}.1").exists()
        texts = [gzip.decompress(f.read_bytes()).decode() for f in backups] + [log_file.read_text()]
        got = numbers([line for text in texts for line in text.splitlines()], r"^record (\d{4}) x{28}$")
        assert got == list(range(got[0], got[0] + 8))

    def test_records_are_routed_through_the_configured_logger_tree(self, tail_cli, tail_producer, tmp_path):
        """A configured logger with its own handler receives its subtree; the rest reaches the root's handler."""
        producer = tail_producer()
        special, other = producer.logger("special.worker"), producer.logger("other")
        special_file, main_file = tmp_path / "special.log", tmp_path / "main.log"
        extra = {
            "loggers": {f"{producer.prefix}.special": {"handlers": ["special"], "propagate": False, "level": "DEBUG"}},
        }
        config = self.write_json(tmp_path / "tail.json", {"class": "logging.FileHandler", "filename": str(main_file)})
        doc = json.loads(config.read_text())
        doc["handlers"]["special"] = {"class": "logging.FileHandler", "filename": str(special_file)}
        doc.update(extra)
        config.write_text(json.dumps(doc))

        def emit(i: int) -> None:
            special.info("special %d", i)
            other.info("other %d", i)

        result = tail_cli.start("--count", "6", "--config", str(config)).stream(emit)
        assert result.returncode == 0, result.describe()
        special_lines = special_file.read_text().splitlines()
        main_lines = main_file.read_text().splitlines()
        assert len(special_lines) + len(main_lines) == 6
        assert special_lines and all(re.fullmatch(r"special \d+", x) for x in special_lines), special_lines
        assert main_lines and all(re.fullmatch(r"other \d+", x) for x in main_lines), main_lines

    def test_ini_file_config(self, tail_cli, tail_producer, tmp_path):
        """An INI (fileConfig) file works as --config too."""
        log_file = tmp_path / "ini.log"
        ini = tmp_path / "tail.ini"
        ini.write_text(
            "[loggers]\nkeys=root\n\n[handlers]\nkeys=file\n\n[formatters]\nkeys=plain\n\n"
            "[logger_root]\nlevel=DEBUG\nhandlers=file\n\n"
            f"[handler_file]\nclass=FileHandler\nformatter=plain\nargs=({str(log_file)!r}, 'a', 'utf-8')\n\n"
            "[formatter_plain]\nformat=%(levelname)s %(message)s\n"
        )
        log = tail_producer().logger("app")
        result = tail_cli.start("--count", "2", "--config", str(ini)).stream(lambda i: log.warning("ini %d", i))
        assert result.returncode == 0, result.describe()
        lines = log_file.read_text().splitlines()
        assert len(lines) == 2
        assert all(re.fullmatch(r"WARNING ini \d+", x) for x in lines), lines


class TestUntrustedText:
    """Remote text cannot forge lines or send terminal escapes: it is escaped, tracebacks are marked."""

    def test_message_control_characters_are_escaped_on_one_line(self, tail_cli, tail_producer):
        """CR, LF, ESC, TAB, NUL, DEL and C1 controls in a message print as visible escapes on one line."""
        producer = tail_producer()
        evil = "evil {}\r\n2026-01-01 00:00:00,000 svc CRITICAL root: forged\x1b[31m red\t\x00\x7f \x9b31m"
        result = tail_cli.start("--count", "1").stream(lambda i: producer.send(f"{producer.prefix}.x", evil.format(i)))
        assert result.returncode == 0, result.describe()
        assert b"\x1b" not in result.stdout
        assert b"\r" not in result.stdout
        assert "\x9b" not in result.text and "\x00" not in result.text and "\x7f" not in result.text
        [line] = result.lines
        escaped = r"2026-01-01 00:00:00,000 svc CRITICAL root: forged\x1b[31m red\t\x00\x7f \x9b31m"
        assert re.search(r"evil \d+\\r\\n", line), line
        assert line.endswith(escaped), line

    def test_forged_traceback_and_stack_lines_are_marked_as_continuations(self, tail_cli, tail_producer):
        """Every exc_text and stack_info line is escaped and prefixed '  | ', so none passes for a record."""
        producer = tail_producer()
        forged = (
            "Traceback (most recent call last):\n"
            '  File "x.py", line 1\n'
            "FakeError: boom\x1b[2J\r\n"
            "2026-01-01 00:00:00,000 svc CRITICAL root: forged record"
        )
        stack = "Stack (most recent call last):\n2026-01-01 00:00:00,000 svc INFO root: forged too\x1b]0;t\x07"

        def emit(i: int) -> None:
            producer.send(f"{producer.prefix}.x", f"tb {i}", logging.ERROR, exc_text=forged, stack_info=stack)

        result = tail_cli.start("--count", "1").stream(emit)
        assert result.returncode == 0, result.describe()
        assert b"\x1b" not in result.stdout and b"\r" not in result.stdout
        head, *rest = result.lines
        assert re.search(r": tb \d+$", head), head
        assert rest == [
            "  | Traceback (most recent call last):",
            '  |   File "x.py", line 1',
            r"  | FakeError: boom\x1b[2J",
            "  | 2026-01-01 00:00:00,000 svc CRITICAL root: forged record",
            "  | Stack (most recent call last):",
            r"  | 2026-01-01 00:00:00,000 svc INFO root: forged too\x1b]0;t\x07",
        ]

    def test_logger_names_and_extras_are_escaped_too(self, tail_cli, tail_producer):
        """Control characters in the logger name and in extras named by --format are escaped."""
        producer = tail_producer()
        name = f"{producer.prefix}.evil\nname"
        tail = tail_cli.start("--count", "1", "-f", "%(name)s|%(user)s|%(message)s")
        result = tail.stream(lambda i: producer.send(name, f"ok {i}", user="a\x1b]0;pwned\x07b"))
        assert result.returncode == 0, result.describe()
        assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout
        [line] = result.lines
        assert re.fullmatch(rf"{re.escape(producer.prefix)}\.evil\\nname\|a\\x1b\]0;pwned\\x07b\|ok \d+", line), line


class TestColor:
    """--color: always colours the level name, never does not, auto follows the terminal and NO_COLOR."""

    COLORED_ERROR = "\x1b[31mERROR\x1b[0m"

    def run(self, tail_cli, tail_producer, *args, **options):
        log = tail_producer().logger("app")
        result = tail_cli.start("--count", "1", *args, **options).stream(lambda i: log.error("c %d", i))
        assert result.returncode == 0, result.describe()
        assert re.search(r"c \d+", result.text), result.describe()
        return result.text

    def test_always_colours_the_level_even_into_a_pipe(self, tail_cli, tail_producer):
        """--color always wraps the level name in its ANSI colour and a reset."""
        assert self.COLORED_ERROR in self.run(tail_cli, tail_producer, "--color", "always")

    def test_never_does_not_colour_a_terminal(self, tail_cli, tail_producer):
        """--color never prints no escape sequence, even to a terminal."""
        text = self.run(tail_cli, tail_producer, "--color", "never", tty=True)
        assert "\x1b" not in text and "ERROR" in text

    def test_auto_colours_a_terminal(self, tail_cli, tail_producer):
        """--color auto (the default) colours output to a terminal."""
        assert self.COLORED_ERROR in self.run(tail_cli, tail_producer, "--color", "auto", tty=True)

    def test_auto_does_not_colour_a_pipe(self, tail_cli, tail_producer):
        """--color auto prints no escape sequence into a pipe."""
        text = self.run(tail_cli, tail_producer)
        assert "\x1b" not in text and "ERROR" in text

    def test_no_color_disables_auto_on_a_terminal(self, tail_cli, tail_producer, tail_env):
        """NO_COLOR=1 turns --color auto off even on a terminal."""
        text = self.run(tail_cli, tail_producer, "--color", "auto", tty=True, env=tail_env(NO_COLOR="1"))
        assert "\x1b" not in text and "ERROR" in text


class TestErrors:
    """Bad input: exit 2, one line on stderr naming the problem, no traceback, nothing on stdout."""

    @pytest.mark.parametrize(
        ("args", "mentions"),
        [
            pytest.param(["--level", "NOPE"], "NOPE", id="unknown-level"),
            pytest.param(["-g", "(unclosed"], "--grep", id="invalid-grep"),
            pytest.param(["--count", "0"], "--count", id="count-zero"),
            pytest.param(["-f", "{message}"], "format", id="format-without-fields-for-style"),
        ],
    )
    def test_bad_option(self, tail_cli, args, mentions):
        """An unusable option value is reported in one line with exit status 2."""
        self.check(tail_cli.run(tail_cli.egress, *args), mentions)

    @pytest.mark.parametrize("endpoint", ["foo", "tcp://", "tcp://127.0.0.1", "ipc://"])
    def test_malformed_endpoint(self, tail_cli, endpoint):
        """A malformed endpoint is reported in one line with exit status 2."""
        self.check(tail_cli.run(endpoint), repr(endpoint))

    def test_missing_config_file(self, tail_cli, tmp_path):
        """A --config file that does not exist is reported in one line with exit status 2."""
        missing = tmp_path / "nope.json"
        self.check(tail_cli.run(tail_cli.egress, "--config", str(missing)), str(missing))

    def test_invalid_json_config(self, tail_cli, tmp_path):
        """A --config file that is not valid JSON is reported in one line with exit status 2."""
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        self.check(tail_cli.run(tail_cli.egress, "--config", str(bad)), "not valid JSON")

    def test_unusable_logging_config(self, tail_cli, tmp_path):
        """A dictConfig that logging rejects (unknown handler class) is reported in one line with exit status 2."""
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}))
        self.check(tail_cli.run(tail_cli.egress, "--config", str(bad)), "invalid logging configuration")

    @staticmethod
    def check(result, mentions: str) -> None:
        assert result.returncode == 2, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.describe()
        assert lines[0].startswith("logfabric tail: "), result.describe()
        assert mentions in lines[0], result.describe()
        assert result.stdout == b""
