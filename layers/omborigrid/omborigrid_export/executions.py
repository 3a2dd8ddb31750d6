"""One export execution per job: its name and ARN, starting it at most once, and asking how it ended.

StartExport starts executions and CreateJob's catch-up asks what became of them; both derive the execution's
ARN here, from the state machine's ARN and the job's deterministic name (:meth:`.state.JobRef.execution_name`),
so that the two can never disagree. Step Functions' failures are translated here too, once.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .errors import StepFunctionsError, StepFunctionsUnavailable
from .redact import describe_exception
from .state import JobRef

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class ExecutionStatus(enum.StrEnum):
    """Step Functions' execution states (DescribeExecution ``status``)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


class StartResult(enum.StrEnum):
    STARTED = "started"
    #: A redelivered message: the execution of this job exists already (running or finished).
    ALREADY_STARTED = "already-started"


#: Error codes that mean "busy or briefly unavailable" once the SDK's own retries are spent.
BUSY_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceUnavailable", "InternalFailure"})
NOT_FOUND = "ExecutionDoesNotExist"
ALREADY_EXISTS = "ExecutionAlreadyExists"


class _Answered(Exception):
    """Step Functions answered with an error code the caller gives a meaning to (not found, already exists)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def execution_arn(state_machine_arn: str, ref: JobRef) -> str:
    """The ARN of the job's execution: the machine's ARN with ``execution`` for ``stateMachine``, plus its name."""
    if ":stateMachine:" not in state_machine_arn:
        raise StepFunctionsError(f"{state_machine_arn!r} is not the ARN of a state machine.")
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + ref.execution_name()


@contextmanager
def step_functions_errors(action: str, *, meaningful: Collection[str] = ()) -> Iterator[None]:
    """Translate what boto3 raises while doing ``action``; codes in ``meaningful`` are given back as ``_Answered``."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in meaningful:
            raise _Answered(code) from None
        if code in BUSY_CODES:
            raise StepFunctionsUnavailable(
                f"Step Functions could not {action}: it answered {code} after the SDK's retries; a retry may succeed."
            ) from None
        raise StepFunctionsError(f"Step Functions could not {action}: {describe_exception(exc)}") from None
    except (BotoConnectionError, HTTPClientError) as exc:
        raise StepFunctionsUnavailable(
            f"Step Functions could not {action}: it could not be reached ({describe_exception(exc)})."
        ) from None
    except BotoCoreError as exc:
        raise StepFunctionsError(f"Step Functions could not {action}: {describe_exception(exc)}") from None


class Executions:
    """The export state machine's executions, one per job."""

    def __init__(self, sfn: SFNClient, state_machine_arn: str) -> None:
        self._sfn = sfn
        self._machine = state_machine_arn

    def status(self, ref: JobRef) -> ExecutionStatus | None:
        """How the job's execution stands, or None when there is none."""
        try:
            with step_functions_errors(f"describe the execution of {ref.request.label}", meaningful={NOT_FOUND}):
                found = self._sfn.describe_execution(executionArn=execution_arn(self._machine, ref))
        except _Answered:
            return None
        return ExecutionStatus(found["status"])

    def start(self, ref: JobRef) -> StartResult:
        """Start the execution for ``ref`` unless it exists.

        StartExecution answers a duplicate of a *running* execution with that execution (not an error), and a
        duplicate of a finished one with ExecutionAlreadyExists; looking first tells the two apart for the logs
        and metrics. Correctness does not depend on the look: the name alone prevents a second run.
        """
        if self.status(ref) is not None:
            return StartResult.ALREADY_STARTED
        try:
            with step_functions_errors(f"start the execution of {ref.request.label}", meaningful={ALREADY_EXISTS}):
                self._sfn.start_execution(
                    stateMachineArn=self._machine, name=ref.execution_name(), input=json.dumps(ref.execution_input())
                )
        except _Answered:
            return StartResult.ALREADY_STARTED
        return StartResult.STARTED
