"""One settings model per Lambda function, read at the start of an invocation before any side effect.

Defaults live in template.yaml, once: its parameters (with their defaults) reach each function as environment,
so a function reads every variable it needs as required and a missing one is a :class:`ConfigurationError`
naming it (the CLI's own defaults are :class:`.settings.Settings`'). Each model declares the variables it reads
(``VARIABLES``) and :class:`FunctionEnvironment` refuses any other name, so the declaration is exactly what the
function reads; ``tests/test_template.py`` compares it with the function's environment in template.yaml.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from .createjob import SchedulePolicy
from .errors import ConfigurationError
from .lake_signals import SignalSettings
from .layout import KeyLayout
from .scheduling import zone
from .settings import (
    ARCHIVE_VARIABLES,
    MIB,
    PROOF_VARIABLES,
    SCHEMA_CHANGE_POLICY,
    SchemaChangePolicy,
    Settings,
    TransferSettings,
    archive_limits_from,
    is_on,
    proof_policy_from,
)


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    #: Required variables are set by template.yaml for every function that reads them. Optional ones are never
    #: set there (local runs and tests only); absent means "off".
    required: bool = True


API_VARIABLES = (
    Variable("OMBORIGRID_API_URL"),
    Variable("OMBORIGRID_TOKEN_SECRET"),
    Variable("OMBORIGRID_ALLOW_LOCAL_URLS", required=False),
)
LAYOUT_VARIABLES = (Variable("EXPORT_PREFIX"), Variable("EXPORT_KEY_TEMPLATE"), Variable("EXPORT_ARCHIVE_KEY_TEMPLATE"))
TRANSFER_VARIABLES = (
    Variable("OMBORIGRID_PART_SIZE_MIB"),
    Variable("OMBORIGRID_TRANSFER_CONCURRENCY"),
    Variable("OMBORIGRID_TRANSFER_ATTEMPTS"),
)
_STATE_MACHINE_ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$")


class FunctionEnvironment:
    """The variables of one function, read only by the names its model declares."""

    def __init__(self, environ: Mapping[str, str], declared: tuple[Variable, ...]) -> None:
        self._environ = environ
        self._declared = {v.name: v for v in declared}

    def text(self, name: str) -> str:
        """The value ("" for an absent optional variable); a missing required one is a ConfigurationError."""
        variable = self._declared.get(name)
        if variable is None:
            raise ConfigurationError(f"{name} is not a setting this function declares.")
        value = self._environ.get(name)
        if value is None:
            if variable.required:
                raise ConfigurationError(
                    f"The function is missing its {name} setting (template.yaml sets it for every deployment)."
                )
            return ""
        return value

    def whole_number(self, name: str) -> int:
        """A whole number; its bounds are checked by the model it goes into (which names the variable)."""
        raw = self.text(name)
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a whole number, not {raw!r}.") from None

    def name(self, name: str) -> str:
        value = self.text(name).strip()
        if not value:
            raise ConfigurationError(f"The function's {name} setting is empty.")
        return value

    def state_machine_arn(self, name: str) -> str:
        value = self.name(name)
        if not _STATE_MACHINE_ARN.fullmatch(value):
            raise ConfigurationError(f"{name} {value!r} is not the ARN of a state machine.")
        return value

    def export_settings(self, transfer: TransferSettings | None = None) -> Settings:
        """The library's settings: the API, the token's secret and the key layout (and, where files are moved,
        the transfer). Validated whole, so a bad key template stops the function before any side effect."""
        prefix = self.text("EXPORT_PREFIX")
        return Settings(
            api_url=self.name("OMBORIGRID_API_URL").rstrip("/"),
            token_secret=self.name("OMBORIGRID_TOKEN_SECRET"),
            allow_local_urls=is_on(self.text("OMBORIGRID_ALLOW_LOCAL_URLS")),
            layout=KeyLayout(prefix=prefix, template=self.name("EXPORT_KEY_TEMPLATE")),
            archive_layout=KeyLayout(prefix=prefix, template=self.name("EXPORT_ARCHIVE_KEY_TEMPLATE")),
            transfer=transfer or TransferSettings(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StartExportSettings:
    VARIABLES: ClassVar[tuple[Variable, ...]] = (Variable("EXPORT_STATE_MACHINE_ARN"),)

    state_machine_arn: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StartExportSettings:
        env = FunctionEnvironment(environ, cls.VARIABLES)
        return cls(state_machine_arn=env.state_machine_arn("EXPORT_STATE_MACHINE_ARN"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceLineageSettings:
    """The function is deployed only when ``LineageEndpoint`` is set; an empty endpoint (the parameter's default)
    means lineage is off and the function sends nothing."""

    VARIABLES: ClassVar[tuple[Variable, ...]] = (Variable("LINEAGE_ENDPOINT"),)

    lineage_endpoint: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AnnounceLineageSettings:
        endpoint = FunctionEnvironment(environ, cls.VARIABLES).text("LINEAGE_ENDPOINT").strip() or None
        if endpoint is not None and not endpoint.startswith(("https://", "http://")):
            raise ConfigurationError(f"LINEAGE_ENDPOINT must be an http(s) URL, not {endpoint!r}.")
        return cls(lineage_endpoint=endpoint)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckStatusSettings:
    VARIABLES: ClassVar[tuple[Variable, ...]] = (*API_VARIABLES, *LAYOUT_VARIABLES)

    export: Settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CheckStatusSettings:
        return cls(export=FunctionEnvironment(environ, cls.VARIABLES).export_settings())


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadSettings:
    VARIABLES: ClassVar[tuple[Variable, ...]] = (
        *API_VARIABLES,
        *LAYOUT_VARIABLES,
        *TRANSFER_VARIABLES,
        Variable("LEDGER_TABLE"),
        Variable("EXPORT_BUCKET"),
        Variable("EXPORT_BUCKET_OWNER"),
        *(Variable(name) for name in (*PROOF_VARIABLES, *ARCHIVE_VARIABLES)),
        *(Variable(name) for name in SignalSettings.VARIABLES),
        Variable(SCHEMA_CHANGE_POLICY),
        #: Caps an invocation's transfer time below Lambda's remaining time (tests and tuning).
        Variable("DOWNLOAD_TIME_BUDGET_SECONDS", required=False),
    )

    export: Settings
    ledger_table: str
    bucket: str
    #: Seconds of transfer work per invocation at most, or None: as long as the invocation has.
    time_budget_seconds: float | None
    #: The lake's signals after each landing (facts, "Schema Changed", "Export Anomalous", lineage).
    signals: SignalSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DownloadSettings:
        env = FunctionEnvironment(environ, cls.VARIABLES)
        transfer = TransferSettings(
            part_size=env.whole_number("OMBORIGRID_PART_SIZE_MIB") * MIB,
            concurrency=env.whole_number("OMBORIGRID_TRANSFER_CONCURRENCY"),
            max_attempts=env.whole_number("OMBORIGRID_TRANSFER_ATTEMPTS"),
        )
        budget = None
        if env.text("DOWNLOAD_TIME_BUDGET_SECONDS"):
            budget = float(env.whole_number("DOWNLOAD_TIME_BUDGET_SECONDS"))
            if budget < 1:
                raise ConfigurationError(f"DOWNLOAD_TIME_BUDGET_SECONDS must be at least 1 second, not {budget:g}.")
        return cls(
            export=dataclasses.replace(
                env.export_settings(transfer),
                expected_bucket_owner=env.name("EXPORT_BUCKET_OWNER"),
                proof=proof_policy_from({name: env.text(name) for name in PROOF_VARIABLES}),
                archive=archive_limits_from({name: env.text(name) for name in ARCHIVE_VARIABLES}),
                schema_change_policy=SchemaChangePolicy.parse(env.name(SCHEMA_CHANGE_POLICY)),
            ),
            ledger_table=env.name("LEDGER_TABLE"),
            bucket=env.name("EXPORT_BUCKET"),
            time_budget_seconds=budget,
            signals=SignalSettings.from_env({name: env.text(name) for name in SignalSettings.VARIABLES}),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateJobSettings:
    VARIABLES: ClassVar[tuple[Variable, ...]] = (
        *API_VARIABLES,
        *LAYOUT_VARIABLES,
        Variable("LEDGER_TABLE"),
        Variable("EXPORT_QUEUE_URL"),
        Variable("EXPORT_STATE_MACHINE_ARN"),
        Variable("TENANT_IDS"),
        Variable("SCHEDULE_TIMEZONE"),
        Variable("LOOKBACK_DAYS"),
        Variable("MAX_JOBS_IN_FLIGHT"),
        Variable("MAX_JOBS_IN_FLIGHT_PER_TENANT"),
        Variable("PAUSE_AFTER_FAILED_NIGHTS"),
        Variable("FRESHNESS_HOURS"),
        Variable("EVENT_BUS_NAME"),
    )

    #: The key templates are validated here too: a job whose file could never land is never created.
    export: Settings
    ledger_table: str
    queue_url: str
    state_machine_arn: str
    policy: SchedulePolicy
    #: Where "Export Failed" (a refused token) and "Tenant Paused" go.
    event_bus: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CreateJobSettings:
        env = FunctionEnvironment(environ, cls.VARIABLES)
        tenants = tuple(dict.fromkeys(t.strip() for t in env.text("TENANT_IDS").split(",") if t.strip()))
        cap = env.whole_number("MAX_JOBS_IN_FLIGHT")
        policy = SchedulePolicy(
            tenants=tenants,
            zone=zone(env.name("SCHEDULE_TIMEZONE")),
            lookback_days=env.whole_number("LOOKBACK_DAYS"),
            max_jobs_in_flight=cap,
            max_jobs_in_flight_per_tenant=tenant_share(env.whole_number("MAX_JOBS_IN_FLIGHT_PER_TENANT"), cap, tenants),
            pause_after_failed_nights=env.whole_number("PAUSE_AFTER_FAILED_NIGHTS"),
            freshness_hours=env.whole_number("FRESHNESS_HOURS"),
        )
        return cls(
            export=env.export_settings(),
            ledger_table=env.name("LEDGER_TABLE"),
            queue_url=env.name("EXPORT_QUEUE_URL"),
            state_machine_arn=env.state_machine_arn("EXPORT_STATE_MACHINE_ARN"),
            policy=policy,
            event_bus=env.name("EVENT_BUS_NAME"),
        )


def tenant_share(configured: int, cap: int, tenants: tuple[str, ...]) -> int:
    """A tenant's share of MAX_JOBS_IN_FLIGHT: the configured one, or with 0 the cap less one slot for each other
    configured tenant, so a backfill of one never leaves another's night without a slot."""
    if configured < 0:
        raise ConfigurationError(f"MAX_JOBS_IN_FLIGHT_PER_TENANT must be 0 (automatic) or more, not {configured}.")
    if configured:
        return min(configured, cap)
    return max(1, cap - max(0, len(tenants) - 1))
