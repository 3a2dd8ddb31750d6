"""The pieces that keep secrets out of logs and traces, one at a time: the logging filter, the excepthook, the
Powertools installation and the X-Ray emitter wrapper (no network; the end-to-end runs are in test_no_secret)."""

from __future__ import annotations

import io
import json
import logging
import traceback
from typing import Any

import pytest
import requests
import urllib3

from omborigrid_export import logsafety
from omborigrid_export.logsafety import RedactingFilter, scrubbed_excepthook
from omborigrid_lambda import observability

SIGNATURE = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SESSION = "FwoGZXIvYXdzEBYa)Exam'pleSessionToken"
PRESIGNED = f"https://exports.example.com/t/f.parquet?X-Amz-Security-Token={SESSION}&X-Amz-Signature={SIGNATURE}"
SECRETS = (SIGNATURE, SESSION, "Exam'pleSessionToken", "EBYa")


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text!r}"


@pytest.fixture
def captured() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s %(url)s"))
    logsafety.install_on([handler])
    logsafety.install_on([handler])  # idempotent
    logger = logging.getLogger("netsec.filter.test")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    return logger, stream


def connection_error() -> requests.ConnectionError:
    path = PRESIGNED.removeprefix("https://exports.example.com")
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, path, reason))  # type: ignore[arg-type]


def test_given_args_exception_stack_and_extra_then_every_part_of_the_record_is_scrubbed(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        try:
            raise connection_error()
        except requests.ConnectionError as inner:
            raise RuntimeError(f"while fetching {PRESIGNED}") from inner
    except RuntimeError:
        logger.warning(
            "Failed to parse headers (url=%s): %s",
            PRESIGNED,
            "defect",
            exc_info=True,
            stack_info=True,
            extra={"url": PRESIGNED},
        )

    output = stream.getvalue()
    assert_clean(output)
    assert output.count("f.parquet?<redacted>") >= 4  # message, extra, the chained exception and its cause
    assert "Traceback" in output
    assert "Stack (most recent call last)" in output


def test_given_a_message_with_newlines_and_escapes_then_it_stays_one_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.error("server said %s", "\x1b[2Jbad\nCRITICAL forged line", extra={"url": "-"})

    assert stream.getvalue() == "ERROR netsec.filter.test: server said bad CRITICAL forged line -\n"


def test_given_a_broken_format_string_then_the_record_is_still_written_scrubbed(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("%d items from %s", "not-a-number", PRESIGNED, extra={"url": "-"})

    assert_clean(stream.getvalue())
    assert "items from" in stream.getvalue()


def test_the_excepthook_prints_the_traceback_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    error = connection_error()
    try:
        raise error
    except requests.ConnectionError:
        scrubbed_excepthook(type(error), error, error.__traceback__)

    err = capsys.readouterr().err
    assert_clean(err)
    assert "requests.exceptions.ConnectionError" in err
    assert err == err.replace("\x1b", "")
    assert "".join(traceback.format_exception(error)).count("\n") == err.count("\n")


def test_installing_on_root_covers_its_handlers_and_the_last_resort() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        logsafety.install_on_root()
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        assert logging.lastResort is not None
        assert any(isinstance(f, RedactingFilter) for f in logging.lastResort.filters)
    finally:
        root.removeHandler(handler)


# --- Lambda: Powertools Logger and the X-Ray emitter ---------------------------------------------------------


def test_given_powertools_logger_then_messages_exceptions_and_dict_messages_are_scrubbed_json() -> None:
    from aws_lambda_powertools import Logger

    stream = io.StringIO()
    logger = Logger(service="netsec-test", logger_handler=logging.StreamHandler(stream))
    observability.install(logger)
    observability.install(logger)  # idempotent

    logger.info({"event": "opened", "url": PRESIGNED})
    try:
        raise connection_error()
    except requests.ConnectionError:
        logger.exception("landing failed for %s", PRESIGNED)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert_clean(stream.getvalue())
    assert lines[0]["message"] == {"event": "opened", "url": "https://exports.example.com/t/f.parquet?<redacted>"}
    assert lines[1]["message"] == "landing failed for https://exports.example.com/t/f.parquet?<redacted>"
    assert "f.parquet?<redacted>" in lines[1]["exception"]
    assert lines[1]["exception_name"] == "ConnectionError"


class _RecordingEmitter:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.addresses: list[str | None] = []

    def send_entity(self, entity: Any) -> None:
        self.sent.append(entity.serialize())

    def set_daemon_address(self, address: str | None) -> None:
        self.addresses.append(address)


def test_the_scrubbing_emitter_sends_the_same_document_with_every_string_scrubbed() -> None:
    from aws_xray_sdk.core.models.segment import Segment  # type: ignore[import-untyped]

    segment = Segment("netsec")
    segment.put_metadata("request", {"url": PRESIGNED, "attempts": 3}, "netsec")
    segment.put_annotation("host", "exports.example.com")
    error = connection_error()
    segment.add_exception(error, traceback.extract_stack())
    segment.close()
    inner = _RecordingEmitter()
    emitter = observability.ScrubbingEmitter(inner)

    emitter.send_entity(segment)
    emitter.set_daemon_address("127.0.0.1:2001")

    assert PRESIGNED.split("?")[1][:20] in segment.serialize()  # the entity itself holds the secrets
    (document,) = inner.sent
    assert_clean(document)
    sent = json.loads(document)
    assert sent["metadata"]["netsec"]["request"] == {
        "url": "https://exports.example.com/t/f.parquet?<redacted>",
        "attempts": 3,
    }
    assert sent["annotations"] == {"host": "exports.example.com"}
    assert "?<redacted>" in sent["cause"]["exceptions"][0]["message"]
    assert inner.addresses == ["127.0.0.1:2001"]


def test_installing_on_xray_wraps_the_global_recorder_once() -> None:
    from aws_xray_sdk.core import xray_recorder  # type: ignore[import-untyped]

    observability.install_on_xray()
    first = xray_recorder.emitter
    observability.install_on_xray()

    assert isinstance(first, observability.ScrubbingEmitter)
    assert xray_recorder.emitter is first
    assert not isinstance(first.inner, observability.ScrubbingEmitter)
