"""Which token, and which API host, each tenant is exported with.

A Grid token is generated inside one tenant (its Developer tab) and tenants live in different data-residency
regions, so a stack that exports several tenants needs a token, and possibly a host, per tenant. The token secret
(Lambda), a ``--tokens`` file or ``OMBORIGRID_TOKENS`` (CLI) hold either one token for every tenant, as plain text
or ``{"token": "..."}``, or a map::

    {"default": "<token>", "tenants": {"<tenantId>": {"token": "<token>", "apiUrl": "https://..."}}}

``default`` is optional (without it only the listed tenants can be exported); a listed tenant's ``token`` may be
left out when a default exists (only its host differs) and its ``apiUrl`` falls back to OMBORIGRID_API_URL. The map
is validated whole when it is read, so a typo stops a run before any job is created, and each ``apiUrl`` is held
to the same rules as OMBORIGRID_API_URL. No token ever appears in a repr or a message: they name the tenant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .client import OmboriGridClient
from .errors import AuthError, ConfigurationError, InvalidInput
from .models import ExportJob, validate_tenant_id
from .settings import check_api_url

MAP_FIELDS = frozenset({"default", "tenants"})
TENANT_FIELDS = frozenset({"token", "apiUrl"})


@dataclass(frozen=True, slots=True)
class TenantEntry:
    """What the map says about one listed tenant (either part may be left to the defaults)."""

    token: str | None = field(default=None, repr=False)
    api_url: str | None = None


def check_token(token: object, where: str) -> str:
    if not isinstance(token, str) or not token.strip():
        raise ConfigurationError(f"{where} has no token (an empty or non-text value).")
    token = token.strip()
    if any(c.isspace() for c in token):
        raise ConfigurationError(f"{where} holds a token with whitespace inside; paste the token alone.")
    return token


class TokenMap:
    """The token and API base URL of each tenant: a listed tenant's own, else the default."""

    def __init__(
        self,
        *,
        api_url: str,
        default_token: str | None,
        tenants: Mapping[str, TenantEntry] | None = None,
        source: str = "the token map",
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._default = default_token
        self._tenants = dict(tenants or {})
        self.source = source
        if default_token is None and not self._tenants:
            raise ConfigurationError(f"{source} has neither a default token nor any tenant.")
        for tenant, entry in self._tenants.items():
            if entry.token is None and default_token is None:
                raise ConfigurationError(
                    f"{source} gives tenant {tenant} no token and has no default token; add one of them."
                )

    @classmethod
    def single(cls, token: str, *, api_url: str, source: str = "the token") -> TokenMap:
        """One token for every tenant (what the stack took before tenants had tokens of their own)."""
        return cls(api_url=api_url, default_token=check_token(token, source), source=source)

    @classmethod
    def from_json(
        cls, text: str, *, api_url: str, allow_local_urls: bool = False, source: str = "the token map"
    ) -> TokenMap:
        """A token map, ``{"token": ...}`` or a plain token (anything not starting with ``{``)."""
        if not text.lstrip().startswith("{"):
            return cls.single(text, api_url=api_url, source=source)
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigurationError(f"{source} starts with '{{' but is not valid JSON.") from None
        if set(data) == {"token"}:
            return cls.single(data["token"], api_url=api_url, source=source)
        return cls.from_dict(data, api_url=api_url, allow_local_urls=allow_local_urls, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, api_url: str, allow_local_urls: bool, source: str) -> TokenMap:
        if not isinstance(data, dict):
            raise ConfigurationError(f"{source} must be a JSON object.")
        unknown = set(data) - MAP_FIELDS
        if unknown:
            raise ConfigurationError(
                f"{source} has unknown field(s) {sorted(unknown)}; it takes 'default' and 'tenants' "
                '({"default": "<token>", "tenants": {"<tenantId>": {"token": "...", "apiUrl": "https://..."}}}).'
            )
        default = check_token(data["default"], f"{source}'s 'default'") if "default" in data else None
        listed = data.get("tenants", {})
        if not isinstance(listed, dict):
            raise ConfigurationError(f"{source}'s 'tenants' must be an object keyed by tenant id.")
        tenants = {
            _tenant_id(tenant, source): _entry(tenant, entry, allow_local_urls=allow_local_urls, source=source)
            for tenant, entry in listed.items()
        }
        return cls(api_url=api_url, default_token=default, tenants=tenants, source=source)

    @classmethod
    def for_cli(
        cls, tokens_file: str | None, environ: Mapping[str, str], *, api_url: str, allow_local_urls: bool
    ) -> TokenMap:
        """The CLI's map: ``--tokens FILE``, else ``OMBORIGRID_TOKENS`` (the map as JSON), else ``OMBORIGRID_TOKEN``."""
        if tokens_file:
            try:
                with open(tokens_file, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                raise ConfigurationError(f"Cannot read the token file {tokens_file}: {exc.strerror}.") from None
            return cls.from_json(text, api_url=api_url, allow_local_urls=allow_local_urls, source=tokens_file)
        for name in ("OMBORIGRID_TOKENS", "OMBORIGRID_TOKEN"):
            if environ.get(name, "").strip():
                return cls.from_json(environ[name], api_url=api_url, allow_local_urls=allow_local_urls, source=name)
        raise ConfigurationError(
            "No OmboriGrid token: pass --tokens FILE, or set OMBORIGRID_TOKENS (a token map) or OMBORIGRID_TOKEN."
        )

    @property
    def listed(self) -> tuple[str, ...]:
        """The tenants the map names (sorted)."""
        return tuple(sorted(self._tenants))

    @property
    def has_default(self) -> bool:
        return self._default is not None

    def for_tenant(self, tenant_id: str) -> tuple[str, str]:
        """``(api_url, token)`` for the tenant; a :class:`ConfigurationError` naming it when it has no token."""
        entry = self._tenants.get(tenant_id, TenantEntry())
        token = entry.token or self._default
        if token is None:
            raise ConfigurationError(
                f"{self.source} has no token for tenant {tenant_id} and no default token; add the tenant to its "
                "'tenants' (a token made in that tenant's Developer tab)."
            )
        return (entry.api_url or self.api_url), token

    def default(self) -> tuple[str, str] | None:
        """``(api_url, token)`` of the default token, or None when the map has none."""
        return None if self._default is None else (self.api_url, self._default)

    def api_url_for(self, tenant_id: str) -> str:
        return self._tenants.get(tenant_id, TenantEntry()).api_url or self.api_url

    def __repr__(self) -> str:
        return f"TokenMap(api_url={self.api_url!r}, default={'set' if self.has_default else 'none'}, tenants={self.listed})"


def _tenant_id(tenant: str, source: str) -> str:
    try:
        return validate_tenant_id(tenant)
    except InvalidInput as exc:
        raise ConfigurationError(f"{source}: {exc}") from None


def _entry(tenant: str, entry: Any, *, allow_local_urls: bool, source: str) -> TenantEntry:
    where = f"{source}'s entry for tenant {tenant}"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be an object with 'token' and/or 'apiUrl'.")
    unknown = set(entry) - TENANT_FIELDS
    if unknown:
        raise ConfigurationError(f"{where} has unknown field(s) {sorted(unknown)}; it takes 'token' and 'apiUrl'.")
    token = check_token(entry["token"], where) if "token" in entry else None
    api_url = entry.get("apiUrl")
    if api_url is not None:
        if not isinstance(api_url, str):
            raise ConfigurationError(f"{where} has an apiUrl that is not text.")
        api_url = check_api_url(api_url.rstrip("/"), allow_local_urls=allow_local_urls, name=f"{where}: apiUrl")
    return TenantEntry(token=token, api_url=api_url)


class TenantClient(OmboriGridClient):
    """A client serving one tenant: a refused token names the tenant whatever was asked (a job id alone does not)."""

    def __init__(self, tenant_id: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant_id = tenant_id

    def get_job(self, job_id: str) -> ExportJob:
        try:
            return super().get_job(job_id)
        except AuthError as exc:
            raise AuthError(f"Tenant {self.tenant_id}: {exc}") from None
