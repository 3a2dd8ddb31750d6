"""Many tenants on the local engine: a token and a host per tenant, a refused token, retry, and a paused tenant.

The token secret holds a token map; the module's simulator serves two tenants (each with a token of its own, one
of them expired) and a second simulator, on another port, serves the third tenant's "region". The nightly run is
``deliver_scheduled`` (moto's Scheduler never fires) and ``retry`` is the real CLI, whose "Export Requested" event
the engine delivers to CreateJob as EventBridge would.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from omborigrid_export_cli.main import main
from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator

from .helpers import WAIT_SCALE, events_for, fresh_config, ledger_item, object_keys
from .ops_helpers import REPO_ROOT, assert_outcomes_valid, wait_until

EU, US, AU = (secrets.token_hex(12) for _ in range(3))
TOKENS = {EU: "tok-eu", US: "tok-us", AU: "tok-au-expired"}
BROKEN, FINE = secrets.token_hex(12), secrets.token_hex(12)
PAUSE_TOKENS = {BROKEN: "tok-broken", FINE: "tok-fine"}


def yesterday() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def start(simulator: Simulator, tokens: dict[str, Any], **parameters: Any) -> LocalStack:
    stack = LocalStack(
        api_url=simulator.base_url, token=json.dumps(tokens), parameters=parameters, wait_scale=WAIT_SCALE
    )
    return stack.start()


def data_keys(stack: LocalStack, tenant: str) -> list[str]:
    return [k for k in object_keys(stack, f"omborigrid/tenant={tenant}/") if not k.rsplit("/", 1)[-1].startswith("_")]


def retry(stack: LocalStack, tenant: str, day: str) -> int:
    return main(["retry", "--stack", stack.stack_name, "--tenant", tenant, "--from", day, "--to", day])


@pytest.fixture(scope="module")
def us_region(sim_cache: Path) -> Iterator[Simulator]:
    """The second host: US's tenant lives there, with its own token."""
    with Simulator(fresh_config(token="tok-us-host-default", tenant_tokens={US: TOKENS[US]}), cache_dir=sim_cache) as s:
        yield s


class TestTokensAndHostsPerTenant:
    """TenantIds EU, US, AU; EU and AU on the module's simulator, US on its own; AU's token has expired."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator, us_region: Simulator) -> Iterator[LocalStack]:
        tokens = {
            "tenants": {
                EU: {"token": TOKENS[EU]},
                US: {"token": TOKENS[US], "apiUrl": us_region.base_url},
                AU: {"token": TOKENS[AU]},
            }
        }
        local = start(module_simulator, tokens, TenantIds=f"{EU},{US},{AU}", LookbackDays=0)
        try:
            yield local
        finally:
            local.close()

    @pytest.fixture
    def eu_host(self, sim: Simulator) -> Simulator:
        sim.configure(token="tok-eu-host-default", tenant_tokens={EU: TOKENS[EU], AU: TOKENS[AU]})
        sim.configure(expired_tokens=[TOKENS[AU]])
        return sim

    def test_two_hosts_land_the_same_night_and_an_expired_token_fails_only_its_tenant(
        self, stack: LocalStack, eu_host: Simulator, us_region: Simulator
    ) -> None:
        """Given three tenants, one on another host and one whose token expired, when the night runs, then EU and
        US land on their own hosts with their own tokens, AU's day is FAILED with AuthError after one POST and one
        re-read of the secret, its "Export Failed" names AU, and the run itself does not fail (no retry)."""
        day = yesterday()
        us_region.reset()

        result = stack.deliver_scheduled()

        assert result["counts"] == {"created": 2, "failed": 1}, result
        stack.wait_for_executions(2, timeout=30)
        for tenant in (EU, US):
            assert ledger_item(stack, tenant, day)["state"]["S"] == "LANDED"
            assert len(data_keys(stack, tenant)) == 1
        assert eu_host.stats().jobs_created_by_key == {f"{EU}/{day}/{day}": 1}
        assert us_region.stats().jobs_created_by_key == {f"{US}/{day}/{day}": 1}
        assert eu_host.stats().by_status.get("401") == 2  # the POST, and the one after re-reading the secret
        failed = ledger_item(stack, AU, day)
        assert failed["state"]["S"] == "FAILED"
        host = eu_host.base_url.split("//", 1)[1]
        assert failed["error"]["S"].startswith(f"AuthError: The OmboriGrid API at {host} refused the token (HTTP 401)")
        assert AU in failed["error"]["S"]
        wait_until(lambda: events_for(stack, AU), timeout=10, what="AU's Export Failed event")
        [event] = events_for(stack, AU)
        assert (event["detail-type"], event["detail"]["error"], event["detail"]["jobId"]) == (
            "Export Failed",
            "AuthError",
            None,
        )
        assert event["detail"]["message"].startswith(f"Tenant {AU}: ")
        assert "tok-" not in json.dumps(event)
        assert assert_outcomes_valid(events_for(stack, AU)) == 1
        assert stack.invocations("CreateJobFunction") >= 1
        assert stack.failed_deliveries == []

    def test_a_failed_day_retried_with_retry_lands_once(self, stack: LocalStack, eu_host: Simulator) -> None:
        """Given AU's failed day from the night before and its token renewed, when `retry` asks for it, then it
        lands once; a second `retry` asks for nothing and creates no job."""
        day = yesterday()
        eu_host.configure(expired_tokens=[])

        assert retry(stack, AU, day) == 0

        wait_until(lambda: ledger_item(stack, AU, day)["state"]["S"] == "LANDED", timeout=30, what="AU landed")
        assert eu_host.stats().jobs_created_by_key == {f"{AU}/{day}/{day}": 1}
        assert len(data_keys(stack, AU)) == 1
        assert retry(stack, AU, day) == 0
        assert eu_host.stats().jobs_created_by_key == {f"{AU}/{day}/{day}": 1}
        assert stack.failed_deliveries == []


class TestPausedTenant:
    """TenantIds BROKEN (its token expired) and FINE; PauseAfterFailedNights 2."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator) -> Iterator[LocalStack]:
        tokens = {"tenants": {tenant: {"token": token} for tenant, token in PAUSE_TOKENS.items()}}
        local = start(module_simulator, tokens, TenantIds=f"{BROKEN},{FINE}", LookbackDays=0, PauseAfterFailedNights=2)
        try:
            yield local
        finally:
            local.close()

    def test_a_tenant_failing_two_nights_is_paused_announced_skipped_and_resumed_by_retry(
        self, stack: LocalStack, sim: Simulator
    ) -> None:
        """Given BROKEN's token expired, when nights run, then the third tick pauses it (one "Tenant Paused"
        event; the run reports it for the TenantsPaused metric) and later ticks send no POST for it; when its token
        is renewed and `retry` asks for its failed day, it is resumed and the day lands once."""
        day = yesterday()
        sim.configure(tenant_tokens=dict(PAUSE_TOKENS), expired_tokens=[PAUSE_TOKENS[BROKEN]])
        paused_queue = capture(stack, "Tenant Paused")

        nights = [stack.deliver_scheduled() for _ in range(4)]

        assert [n["pausedTenants"] for n in nights] == [[], [], [BROKEN], [BROKEN]]
        assert sim.stats().by_status.get("401") == 4  # two nights, each one POST and one re-read
        assert sim.stats().jobs_created_by_key == {f"{FINE}/{day}/{day}": 1}
        announced: list[dict[str, Any]] = []

        def collect() -> list[dict[str, Any]]:
            announced.extend(received(stack, paused_queue))
            return announced

        wait_until(collect, timeout=10, what="pause")
        [paused] = announced
        assert paused["detail"]["tenantId"] == BROKEN
        assert (paused["detail"]["failedNights"], paused["detail"]["pauseAfterFailedNights"]) == (2, 2)
        assert paused["detail"]["lastError"].startswith("AuthError: ")
        assert "tok-" not in json.dumps(paused)
        schema = json.loads((REPO_ROOT / "schemas" / "tenant-paused.schema.json").read_text(encoding="utf-8"))
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
        assert list(validator(schema, format_checker=validator.FORMAT_CHECKER).iter_errors(paused["detail"])) == []
        health = stack.client("dynamodb").get_item(
            TableName=stack.table_name, Key={"tenantId": {"S": "#health"}, "dataRange": {"S": BROKEN}}
        )["Item"]
        assert health["paused"]["BOOL"] is True

        sim.configure(expired_tokens=[])
        assert retry(stack, BROKEN, day) == 0

        wait_until(lambda: ledger_item(stack, BROKEN, day)["state"]["S"] == "LANDED", timeout=30, what="landed")
        assert sim.stats().jobs_created_by_key == {f"{FINE}/{day}/{day}": 1, f"{BROKEN}/{day}/{day}": 1}
        after = stack.deliver_scheduled()
        assert (after["pausedTenants"], after["counts"]) == ([], {})
        assert len(data_keys(stack, BROKEN)) == 1


def capture(stack: LocalStack, detail_type: str) -> str:
    """A rule → queue for one detail-type of ours (the engine captures only the export outcomes)."""
    sqs, events = stack.client("sqs"), stack.client("events")
    name = f"capture-{uuid.uuid4().hex[:8]}"
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = json.dumps({"source": ["omborigrid.export"], "detail-type": [detail_type]})
    # On the stack's own bus, where CreateJob announces (as the state machine does the outcomes).
    events.put_rule(Name=name, EventBusName=stack.event_bus, EventPattern=pattern)
    events.put_targets(Rule=name, EventBusName=stack.event_bus, Targets=[{"Id": "q", "Arn": arn}])
    return url


def received(stack: LocalStack, queue_url: str) -> list[dict[str, Any]]:
    messages = stack.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]
