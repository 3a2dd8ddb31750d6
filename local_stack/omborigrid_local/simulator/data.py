"""Deterministic OmboriGrid-shaped analytics data, written as real parquet (or a zip of parquet) on disk.

Why real files: the pipeline under test must sniff, stream and land the bytes exactly as it would on AWS,
so a stub body would prove nothing. Why deterministic: tests compare bytes and row counts across runs and
across two simulator instances, so every value comes from ``random.Random`` seeded with a SHA-256 of the
inputs (tenant, day, rows_per_day, ...) and the pyarrow writer options are fixed; nothing reads the clock.

Shape (see ``docs/omborigrid-data.md``):

* ``events``, ``sessions`` and ``clients`` tables with camelCase columns; unused event columns are nulls.
* Each date in ``[dataDateFrom, dataDateTo]`` (inclusive) contributes one day of data that depends only on
  (tenant, day, rows_per_day, timestamp_format): a range is the concatenation of its days.
* ``rows_per_day`` is the exact number of events per day: about 90 % in user/device sessions of 1-30 events,
  the rest ``MONITOR_*`` events from every installation's daily monitoring session.
* Timestamps: ``timestamp_format="timestamp"`` (default) stores ``timestamp[us, tz=UTC]``;
  ``"string"`` stores ISO strings with 7 fractional digits, ``2024-04-12T07:55:23.3720000Z``.
* The lake's own signals (issue 12), per day: ``empty_days`` have 0 rows, ``day_fractions`` scale a day's
  events, and from ``schema_change_from`` the events table changes (``"type"``: ``int1`` is a string column;
  ``"add"``: a string column ``str6`` is appended). Only those days' bytes change: every other day is
  generated exactly as without them, and a spec without them has the same cache key as before they existed.
* ``target_bytes`` pads the delivery with extra ``MONITOR_DIAGNOSTICS`` event row groups whose ``str4``/``str5``
  hold hex of SHAKE-128 output, stored uncompressed, until the file reaches at least that size. They are
  real rows and are counted in the row counts.

Deliveries:

* ``parquet``: one parquet file holding the ``events`` table for the whole range.
* ``zip``: a ZIP_STORED archive with one parquet per table per day, members named
  ``<table>/dt=YYYY-MM-DD/part-0.parquet`` in date order (events, sessions, clients for each day); padding
  (if any) goes into the last day's events member.

Cache: each delivery is generated once into ``cache_dir`` as ``<key>.parquet|zip`` plus a ``<key>.json``
sidecar (size, row counts), written to temp files and renamed, under a per-key thread lock and a
``flock`` on ``<key>.lock`` so concurrent requests (or processes) never generate the same file twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
import uuid
import zipfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .damage import Damage
from .damage import apply as apply_damage

try:  # POSIX only; without it the per-process lock still prevents duplicate work inside one simulator.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
TABLES = ("events", "sessions", "clients")

EVENTS_PER_BATCH = 50_000  # bounds memory for huge rows_per_day; one row group per batch
PAD_HEX_CHARS = 4096  # per str4 / str5 value of a padding row
PAD_MAX_ROWS = 2048  # ~16 MiB padding row groups
_PAD_ROW_OVERHEAD = 2 * PAD_HEX_CHARS + 160

_UNCOMPRESSED = frozenset({"str4", "str5"})
_NO_DICTIONARY = frozenset({"id", "str4", "str5", "eventTime", "eventCaptureTime"})

RESIDENCIES = ("EU", "US", "UAE", "AU", "IN")
COUNTRIES = {
    "EU": ("SE", "DE", "NL", "FR", "GB", "ES", "NO", "DK"),
    "US": ("US", "CA", "MX"),
    "UAE": ("AE", "SA", "QA"),
    "AU": ("AU", "NZ"),
    "IN": ("IN",),
}
_CITY_CENTRES = {
    "SE": (59.33, 18.07),
    "DE": (52.52, 13.40),
    "NL": (52.37, 4.90),
    "FR": (48.86, 2.35),
    "GB": (51.51, -0.13),
    "ES": (40.42, -3.70),
    "NO": (59.91, 10.75),
    "DK": (55.68, 12.57),
    "US": (40.71, -74.01),
    "CA": (43.65, -79.38),
    "MX": (19.43, -99.13),
    "AE": (25.20, 55.27),
    "SA": (24.71, 46.68),
    "QA": (25.29, 51.53),
    "AU": (-33.87, 151.21),
    "NZ": (-36.85, 174.76),
    "IN": (19.08, 72.88),
}
CURRENCIES = {"EU": "EUR", "US": "USD", "UAE": "AED", "AU": "AUD", "IN": "INR"}

# (eventType, weight) for events after the first one of a session.
_SESSION_EVENT_WEIGHTS = (
    ("CONTENT_VIEW", 22),
    ("PRODUCT_VIEW", 18),
    ("CATEGORY_VIEW", 10),
    ("CART_ADD", 8),
    ("CART_REMOVE", 2),
    ("CART_VIEW", 4),
    ("CART_CLEAR", 1),
    ("SEARCH", 6),
    ("SEARCH_CLEAR", 1),
    ("QR_RUN", 2),
    ("CHECKOUT_PRODUCT", 2),
    ("PURCHASE_PRODUCT", 3),
    ("PURCHASE", 2),
    ("RATING", 2),
    ("FEEDBACK", 1),
    ("DETECT_MOOD", 2),
    ("DETECT_AGE", 2),
    ("MEDIA_FINISHED", 8),
    ("SCAN_BARCODE", 3),
)
_EVENT_TYPES = tuple(t for t, _ in _SESSION_EVENT_WEIGHTS)
_EVENT_CUM_WEIGHTS = tuple(
    sum(w for _, w in _SESSION_EVENT_WEIGHTS[: i + 1]) for i in range(len(_SESSION_EVENT_WEIGHTS))
)
_NON_INTERACTIVE = frozenset({"APP_START", "MEDIA_FINISHED", "DETECT_MOOD", "DETECT_AGE"})
_STATEFUL = frozenset({"CART_ADD", "CART_REMOVE", "CART_CLEAR"})
_MONITOR_KINDS = (("MONITOR_HEARTBEAT", "heartbeat"), ("MONITOR_NETWORK", "network"), ("MONITOR_DISPLAY", "display"))
_TITLES = ("Summer sale", "New arrivals", "Store map", "Opening hours", "Loyalty club", "Gift cards", "Returns")
_LOCALIZED = ("Sommarrea", "Neuheiten", "Plan du magasin", "Horario", "Kundklubb", "Presentkort", "Retouren")
_QUERIES = ("sneakers", "rain jacket", "gift", "size 42", "black dress", "coffee", "headphones", "kids")
_MOODS = ("happy", "neutral", "surprised", "sad", "angry")
_MEDIA_TYPES = ("video", "image", "html")
_COMMENTS = ("Great service", "Could not find my size", "Fast checkout", "Screen was slow", "Nice store", "")
_USER_AGENTS = (
    ("Apple", "iPhone", "mobile", "iOS", "17.4", "Mobile Safari", "17.4", "WebKit", "arm64", 390, 844),
    ("Samsung", "SM-S918B", "mobile", "Android", "14", "Chrome", "123.0", "Blink", "arm64", 412, 915),
    ("Google", "Pixel 8", "mobile", "Android", "14", "Chrome", "124.0", "Blink", "arm64", 412, 915),
    ("Apple", "Macintosh", "desktop", "Mac OS", "14.4", "Safari", "17.4", "WebKit", "arm64", 1512, 982),
    (None, None, "desktop", "Windows", "10", "Edge", "123.0", "Blink", "amd64", 1920, 1080),
    ("Apple", "iPad", "tablet", "iOS", "17.3", "Mobile Safari", "17.3", "WebKit", "arm64", 820, 1180),
)

_TS_TYPE = pa.timestamp("us", tz="UTC")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DAY_US = 86_400_000_000


def _ts(fmt: str) -> pa.DataType:
    return _TS_TYPE if fmt == "timestamp" else pa.string()


def events_schema(fmt: str = "timestamp") -> pa.Schema:
    """The events table: a wide, sparse, nullable table, as OmboriGrid stores it."""
    s, i = pa.string(), pa.int64()
    return pa.schema(
        [
            ("id", s),
            ("tenantId", s),
            ("sessionId", s),
            ("clientId", s),
            ("spaceId", s),
            ("dataResidency", s),
            ("captureId", s),
            ("eventType", s),
            ("eventTime", _ts(fmt)),
            ("eventCaptureTime", _ts(fmt)),
            ("interaction", pa.bool_()),
            ("ip", s),
            ("productId", s),
            ("categoryId", s),
            ("int1", i),
            ("int2", i),
            ("int3", i),
            ("int4", i),
            ("int5", i),
            ("str1", s),
            ("str2", s),
            ("str3", s),
            ("str4", s),
            ("str5", s),
            ("stateful", pa.bool_()),
            ("public", i),
        ]
    )


def sessions_schema(fmt: str = "timestamp") -> pa.Schema:
    """One row per session (a session ends after 30 idle minutes; there is no end event)."""
    s, f = pa.string(), pa.float64()
    return pa.schema(
        [
            ("sessionId", s),
            ("tenantId", s),
            ("sessionCreated", _ts(fmt)),
            ("environment", s),
            ("dataResidency", s),
            ("country", s),
            ("spaceId", s),
            ("appId", s),
            ("appVersion", s),
            ("installationId", s),
            ("installationVersion", s),
            ("deviceId", s),
            ("clientId", s),
            ("ip", s),
            ("locationAccuracy", f),
            ("latitude", f),
            ("longitude", f),
            ("captureId", s),
        ]
    )


def clients_schema(fmt: str = "timestamp") -> pa.Schema:
    """One row per web/mobile client active that day (device sessions have no client)."""
    s, i, f = pa.string(), pa.int32(), pa.float64()
    return pa.schema(
        [
            ("clientId", s),
            ("tenantId", s),
            ("clientCreated", _ts(fmt)),
            ("userAgent", s),
            ("ip", s),
            ("deviceVendor", s),
            ("deviceModel", s),
            ("deviceType", s),
            ("osName", s),
            ("osVersion", s),
            ("browserName", s),
            ("browserVersion", s),
            ("browserEngine", s),
            ("cpuArchitecture", s),
            ("screenWidth", i),
            ("screenHeight", i),
            ("screenColorDepth", i),
            ("dataResidency", s),
            ("country", s),
            ("latitude", f),
            ("longitude", f),
            ("locationAccuracy", f),
            ("captureId", s),
        ]
    )


SCHEMAS = {"events": events_schema, "sessions": sessions_schema, "clients": clients_schema}
ADDED_COLUMN = "str6"
RETYPED_COLUMN = "int1"


def evolve_events(table: pa.Table, change: str | None) -> pa.Table:
    """The events table after a schema change: ``"type"`` (breaking) or ``"add"`` (additive); None: as is."""
    if change == "type":
        index = table.schema.get_field_index(RETYPED_COLUMN)
        retyped = pc.cast(table.column(RETYPED_COLUMN), pa.string())
        return table.set_column(index, pa.field(RETYPED_COLUMN, pa.string()), retyped)
    if change == "add":
        values = pa.array(["sdk-2"] * table.num_rows, pa.string())
        return table.append_column(pa.field(ADDED_COLUMN, pa.string()), values)
    return table


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _hex24(rng: random.Random) -> str:
    return f"{rng.getrandbits(96):024x}"


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _uuid_from(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _ip(rng: random.Random) -> str:
    return f"{rng.choice((31, 46, 78, 81, 85, 94, 104, 151, 185, 212))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _format_ts(micros: int) -> str:
    moment = _EPOCH + dt.timedelta(microseconds=micros)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def _ts_array(values: list[int], fmt: str) -> pa.Array:
    if fmt == "timestamp":
        return pa.array(values, type=_TS_TYPE)
    return pa.array([_format_ts(v) for v in values], type=pa.string())


def _day_start_us(day: dt.date) -> int:
    return (dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class _Installation:
    id: str
    app_id: str
    app_version: str
    version: str
    space_id: str
    country: str
    latitude: float
    longitude: float
    device_id: str
    ip: str
    environment: str
    kiosk: bool  # kiosk/screen installations have device sessions without clientId


def _monitor_session(tenant_id: str, day: dt.date, inst: _Installation) -> dict[str, Any]:
    """The daily monitoring session of an installation; ids derive from a hash so padding can reuse them."""
    return {
        "sessionId": _uuid_from("monitor", SCHEMA_VERSION, tenant_id, day, inst.id),
        "clientId": None,
        "spaceId": inst.space_id,
        "captureId": _uuid_from("monitor-capture", SCHEMA_VERSION, tenant_id, day, inst.id),
        "ip": inst.ip,
    }


class _Tenant:
    """The stable world of one tenant (spaces, installations, catalogue), derived only from its id."""

    def __init__(self, tenant_id: str) -> None:
        rng = random.Random(_seed("tenant", SCHEMA_VERSION, tenant_id))
        self.id = tenant_id
        self.residency = rng.choice(RESIDENCIES)
        self.currency = CURRENCIES[self.residency]
        countries = COUNTRIES[self.residency]
        apps = [(_hex24(rng), f"{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}") for _ in range(3)]
        spaces = []
        for _ in range(rng.randint(2, 6)):
            country = rng.choice(countries)
            lat, lon = _CITY_CENTRES[country]
            spaces.append((_hex24(rng), country, lat + rng.uniform(-0.3, 0.3), lon + rng.uniform(-0.3, 0.3)))
        self.installations: list[_Installation] = []
        for n in range(rng.randint(3, 12)):
            app_id, app_version = rng.choice(apps)
            space_id, country, lat, lon = rng.choice(spaces)
            self.installations.append(
                _Installation(
                    id=_hex24(rng),
                    app_id=app_id,
                    app_version=app_version,
                    version=f"{rng.randint(1, 3)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}",
                    space_id=space_id,
                    country=country,
                    latitude=round(lat, 6),
                    longitude=round(lon, 6),
                    device_id=_uuid4(rng),
                    ip=_ip(rng),
                    environment="production" if rng.random() < 0.85 else "staging",
                    kiosk=n == 0 or rng.random() < 0.6,
                )
            )
        self.kiosks = [i for i in self.installations if i.kiosk] or self.installations
        self.web = [i for i in self.installations if not i.kiosk] or self.installations
        self.categories = [f"cat-{rng.randrange(100, 999)}" for _ in range(rng.randint(5, 12))]
        self.products = [
            (f"sku-{rng.randrange(100000, 999999)}", rng.choice(self.categories), rng.randrange(199, 49999))
            for _ in range(rng.randint(20, 60))
        ]


class _DayData:
    """One tenant-day of data: events in bounded batches, then the sessions and clients it produced."""

    def __init__(self, tenant: _Tenant, day: dt.date, rows: int, fmt: str, change: str | None = None) -> None:
        self.tenant, self.day, self.rows, self.fmt, self.change = tenant, day, rows, fmt, change
        self.rng = random.Random(_seed("day", SCHEMA_VERSION, tenant.id, day.isoformat(), rows))
        self.start_us = _day_start_us(day)
        self.sessions: dict[str, list[Any]] = {n: [] for n in sessions_schema().names}
        self.clients: dict[str, list[Any]] = {n: [] for n in clients_schema().names}
        self.client_pool = max(20, rows // 15)
        self._seen_clients: set[int] = set()
        self._events: dict[str, list[Any]] = {}
        self._reset_events()

    def _reset_events(self) -> None:
        self._events = {n: [] for n in events_schema().names}

    def _event_table(self) -> pa.Table:
        schema = events_schema(self.fmt)
        arrays = []
        for f in schema:
            values = self._events[f.name]
            if f.name in ("eventTime", "eventCaptureTime"):
                arrays.append(_ts_array(values, self.fmt))
            else:
                arrays.append(pa.array(values, type=f.type))
        self._reset_events()
        return evolve_events(pa.Table.from_arrays(arrays, schema=schema), self.change)

    def _add_event(self, etype: str, sess: dict[str, Any], t_us: int, **cols: Any) -> None:
        rng = self.rng
        e = self._events
        e["id"].append(_uuid4(rng))
        e["tenantId"].append(self.tenant.id)
        e["sessionId"].append(sess["sessionId"])
        e["clientId"].append(sess["clientId"])
        e["spaceId"].append(sess["spaceId"])
        e["dataResidency"].append(self.tenant.residency)
        e["captureId"].append(sess["captureId"])
        e["eventType"].append(etype)
        e["eventTime"].append(t_us)
        e["eventCaptureTime"].append(t_us + rng.randrange(50_000, 60_000_000))
        e["interaction"].append(not etype.startswith("MONITOR_") and etype not in _NON_INTERACTIVE)
        e["ip"].append(sess["ip"])
        for name in ("productId", "categoryId", "int1", "int2", "int3", "int4", "int5"):
            e[name].append(cols.get(name))
        for name in ("str1", "str2", "str3", "str4", "str5"):
            e[name].append(cols.get(name))
        stateful = etype in _STATEFUL
        e["stateful"].append(stateful)
        e["public"].append(3_600_000 if stateful else None)

    def _add_session(self, inst: _Installation, t_us: int, client: int | None) -> dict[str, Any]:
        rng = self.rng
        sess: dict[str, Any] = {
            "sessionId": _uuid4(rng),
            "tenantId": self.tenant.id,
            "sessionCreated": t_us,
            "environment": inst.environment,
            "dataResidency": self.tenant.residency,
            "country": inst.country,
            "spaceId": inst.space_id,
            "appId": inst.app_id,
            "appVersion": inst.app_version,
            "installationId": inst.id,
            "installationVersion": inst.version,
            "deviceId": inst.device_id if client is None else None,
            "clientId": None,
            "ip": inst.ip,
            "locationAccuracy": None if client is None else round(rng.uniform(5, 2000), 1),
            "latitude": inst.latitude,
            "longitude": inst.longitude,
            "captureId": _uuid4(rng),
        }
        if client is not None:
            sess["clientId"], sess["ip"] = self._client(client, t_us, inst)
        for name, values in self.sessions.items():
            values.append(sess[name])
        return sess

    def _client(self, index: int, t_us: int, inst: _Installation) -> tuple[str, str]:
        crng = random.Random(_seed("client", SCHEMA_VERSION, self.tenant.id, self.client_pool, index))
        client_id = _uuid4(crng)
        ip = _ip(crng)
        if index not in self._seen_clients:
            self._seen_clients.add(index)
            ua = crng.choice(_USER_AGENTS)
            vendor, model, dtype, os_name, os_ver, browser, b_ver, engine, cpu, width, height = ua
            agent = f"Mozilla/5.0 ({model or os_name}; {os_name} {os_ver}) {engine} {browser}/{b_ver}"
            row = {
                "clientId": client_id,
                "tenantId": self.tenant.id,
                "clientCreated": t_us,
                "userAgent": agent,
                "ip": ip,
                "deviceVendor": vendor,
                "deviceModel": model,
                "deviceType": dtype,
                "osName": os_name,
                "osVersion": os_ver,
                "browserName": browser,
                "browserVersion": b_ver,
                "browserEngine": engine,
                "cpuArchitecture": cpu,
                "screenWidth": width,
                "screenHeight": height,
                "screenColorDepth": 24 if dtype != "desktop" else crng.choice((24, 30)),
                "dataResidency": self.tenant.residency,
                "country": inst.country,
                "latitude": round(inst.latitude + crng.uniform(-0.05, 0.05), 6),
                "longitude": round(inst.longitude + crng.uniform(-0.05, 0.05), 6),
                "locationAccuracy": round(crng.uniform(5, 2000), 1),
                "captureId": _uuid4(crng),
            }
            for name, values in self.clients.items():
                values.append(row[name])
        return client_id, ip

    def _session_event_cols(self, etype: str, state: dict[str, Any]) -> dict[str, Any]:
        rng, t = self.rng, self.tenant
        if etype == "CONTENT_VIEW":
            k = rng.randrange(len(_TITLES))
            return {"str1": _TITLES[k], "str2": f"https://content.example/{k}", "str3": _LOCALIZED[k]}
        if etype in ("PRODUCT_VIEW", "CART_ADD", "CART_REMOVE", "CHECKOUT_PRODUCT", "PURCHASE_PRODUCT"):
            sku, cat, price = rng.choice(t.products)
            if etype == "PRODUCT_VIEW":
                return {"productId": sku}
            qty = rng.randint(1, 3)
            if etype in ("CART_ADD", "CART_REMOVE"):
                return {"productId": sku, "int1": qty}
            state["revenue"] = state.get("revenue", 0) + qty * price
            return {
                "productId": sku,
                "categoryId": cat,
                "int1": qty,
                "int2": price,
                "str1": state["txn"],
                "str2": f"Product {sku[4:]}",
                "str3": t.currency,
            }
        if etype == "CATEGORY_VIEW":
            return {"categoryId": rng.choice(t.categories)}
        if etype == "PURCHASE":
            revenue = state.get("revenue") or rng.randrange(500, 90000)
            return {
                "str1": state["txn"],
                "str2": t.currency,
                "str3": rng.choice((None, None, "WELCOME10", "SUMMER")),
                "int1": revenue,
                "int2": revenue // 5,
                "int3": rng.choice((0, 0, 495, 995)),
            }
        if etype == "SEARCH":
            return {"str1": rng.choice(_QUERIES)}
        if etype == "RATING":
            return {"int1": rng.randint(1, 5), "int2": rng.randrange(1000, 30000), "str1": rng.choice(_COMMENTS)}
        if etype == "FEEDBACK":
            return {"str1": rng.choice(_COMMENTS[:-1])}
        if etype == "DETECT_MOOD":
            return {"str1": rng.choice(_MOODS), "int1": rng.randint(40, 99)}
        if etype == "DETECT_AGE":
            return {"int1": rng.randint(12, 80), "int2": rng.choice((3, 5, 10))}
        if etype == "MEDIA_FINISHED":
            media = rng.randrange(1, 40)
            return {
                "str1": f"media-{media:03d}",
                "str2": rng.choice(_MEDIA_TYPES),
                "str3": f"Campaign clip {media}",
                "str4": rng.choice(("promo", "promo,summer", "brand", "loop")),
                "int1": rng.randrange(5000, 60000),
            }
        if etype == "SCAN_BARCODE":
            return {"str1": f"{rng.randrange(10**12, 10**13)}"}
        return {}  # APP_START, CART_VIEW, CART_CLEAR, SEARCH_CLEAR, QR_RUN

    def event_batches(self) -> Iterator[pa.Table]:
        """Yield the day's events as tables of at most EVENTS_PER_BATCH rows."""
        rng, tenant = self.rng, self.tenant
        n_monitor = self.rows // 10
        budget = self.rows - n_monitor
        plans: list[tuple[int, int, bool]] = []
        while budget > 0:
            length = min(rng.randint(1, 30), budget)
            budget -= length
            plans.append((rng.randrange(0, 86_400 - 3_600) * 1_000_000, length, rng.random() < 0.55))
        plans.sort(key=lambda p: p[0])
        pending = 0
        for offset, length, kiosk in plans:
            inst = rng.choice(tenant.kiosks if kiosk else tenant.web)
            t_us = self.start_us + offset + rng.randrange(1_000_000)
            sess = self._add_session(inst, t_us, None if kiosk else rng.randrange(self.client_pool))
            state: dict[str, Any] = {"txn": f"T{rng.getrandbits(40):010X}"}
            for k in range(length):
                if k == 0:
                    etype = "APP_START" if kiosk else "CONTENT_VIEW"
                else:
                    etype = rng.choices(_EVENT_TYPES, cum_weights=_EVENT_CUM_WEIGHTS)[0]
                    t_us += rng.randrange(1_000_000, 90_000_000)
                self._add_event(etype, sess, t_us, **self._session_event_cols(etype, state))
            pending += length
            if pending >= EVENTS_PER_BATCH:
                pending = 0
                yield self._event_table()
        if pending:
            yield self._event_table()
        if n_monitor:
            yield from self._monitor_batches(n_monitor)

    def _monitor_batches(self, n_monitor: int) -> Iterator[pa.Table]:
        rng, insts = self.rng, self.tenant.installations
        per_inst = [n_monitor // len(insts) + (1 if i < n_monitor % len(insts) else 0) for i in range(len(insts))]
        pending = 0
        for inst, count in zip(insts, per_inst, strict=True):
            if not count:
                continue
            sess = _monitor_session(self.tenant.id, self.day, inst)
            row = {name: sess[name] for name in ("sessionId", "captureId")}
            for name, values in self.sessions.items():
                if name in row:
                    values.append(row[name])
                elif name == "sessionCreated":
                    values.append(self.start_us)
                else:
                    values.append(
                        {
                            "tenantId": self.tenant.id,
                            "environment": inst.environment,
                            "dataResidency": self.tenant.residency,
                            "country": inst.country,
                            "spaceId": inst.space_id,
                            "appId": inst.app_id,
                            "appVersion": inst.app_version,
                            "installationId": inst.id,
                            "installationVersion": inst.version,
                            "deviceId": inst.device_id,
                            "ip": inst.ip,
                            "latitude": inst.latitude,
                            "longitude": inst.longitude,
                        }.get(name)
                    )
            interval_s = max(1, (86_400 - 120) // count)
            for k in range(count):
                etype, kind = rng.choice(_MONITOR_KINDS)
                t_us = self.start_us + k * interval_s * 1_000_000 + rng.randrange(1_000_000)
                cols: dict[str, Any] = {"str1": kind, "int1": rng.choice((200, 200, 200, 200, 503)), "int5": interval_s}
                if etype == "MONITOR_NETWORK":
                    cols["str2"] = inst.ip
                self._add_event(etype, sess, t_us, **cols)
                pending += 1
                if pending >= EVENTS_PER_BATCH:
                    pending = 0
                    yield self._event_table()
        if pending:
            yield self._event_table()

    def sessions_table(self) -> pa.Table:
        return _table(self.sessions, sessions_schema(self.fmt), self.fmt, ("sessionCreated",))

    def clients_table(self) -> pa.Table:
        return _table(self.clients, clients_schema(self.fmt), self.fmt, ("clientCreated",))


def _table(columns: dict[str, list[Any]], schema: pa.Schema, fmt: str, ts_cols: tuple[str, ...]) -> pa.Table:
    arrays = [
        _ts_array(columns[f.name], fmt) if f.name in ts_cols else pa.array(columns[f.name], type=f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _padding_table(tenant: _Tenant, day: dt.date, rows: int, fmt: str, seed_parts: tuple[object, ...]) -> pa.Table:
    """Padding rows: monitoring diagnostics whose str4/str5 carry incompressible hex blobs.

    The blobs are built as whole Arrow buffers (no per-value Python objects) so a GiB pads in seconds.
    """
    rng = random.Random(_seed("pad", *seed_parts))
    start = _day_start_us(day)
    insts = [rng.choice(tenant.installations) for _ in range(rows)]
    sessions = {i.id: _monitor_session(tenant.id, day, i) for i in tenant.installations}
    times = sorted(start + rng.randrange(0, _DAY_US - 120_000_000) for _ in range(rows))
    blob = hashlib.shake_128(repr(seed_parts).encode()).digest(rows * PAD_HEX_CHARS).hex().encode()
    half = rows * PAD_HEX_CHARS
    offsets = pa.py_buffer(array("i", range(0, half + 1, PAD_HEX_CHARS)).tobytes())
    str4 = pa.StringArray.from_buffers(rows, offsets, pa.py_buffer(blob[:half]))
    str5 = pa.StringArray.from_buffers(rows, offsets, pa.py_buffer(blob[half:]))
    s, i64 = pa.string(), pa.int64()
    cols: dict[str, pa.Array] = {
        "id": pa.array([_uuid4(rng) for _ in range(rows)], s),
        "tenantId": pa.array([tenant.id] * rows, s),
        "sessionId": pa.array([sessions[i.id]["sessionId"] for i in insts], s),
        "clientId": pa.nulls(rows, s),
        "spaceId": pa.array([i.space_id for i in insts], s),
        "dataResidency": pa.array([tenant.residency] * rows, s),
        "captureId": pa.array([sessions[i.id]["captureId"] for i in insts], s),
        "eventType": pa.array(["MONITOR_DIAGNOSTICS"] * rows, s),
        "eventTime": _ts_array(times, fmt),
        "eventCaptureTime": _ts_array([t + 1_500_000 for t in times], fmt),
        "interaction": pa.array([False] * rows, pa.bool_()),
        "ip": pa.array([i.ip for i in insts], s),
        "productId": pa.nulls(rows, s),
        "categoryId": pa.nulls(rows, s),
        "int1": pa.array([200] * rows, i64),
        "int2": pa.nulls(rows, i64),
        "int3": pa.nulls(rows, i64),
        "int4": pa.nulls(rows, i64),
        "int5": pa.array([60] * rows, i64),
        "str1": pa.array(["diagnostics"] * rows, s),
        "str2": pa.array([i.ip for i in insts], s),
        "str3": pa.nulls(rows, s),
        "str4": str4,
        "str5": str5,
        "stateful": pa.array([False] * rows, pa.bool_()),
        "public": pa.nulls(rows, i64),
    }
    schema = events_schema(fmt)
    return pa.Table.from_arrays([cols[n] for n in schema.names], schema=schema)


def _writer(sink: pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
    """Fixed writer options: part of what makes the output byte-identical run to run."""
    names = schema.names
    return pq.ParquetWriter(
        sink,
        schema,
        version="2.6",
        compression={n: ("NONE" if n in _UNCOMPRESSED else "SNAPPY") for n in names},
        use_dictionary=[n for n in names if n not in _NO_DICTIONARY],
        write_statistics=[n for n in names if n not in _UNCOMPRESSED],
        data_page_size=1 << 20,
    )


@dataclass(frozen=True)
class DeliverySpec:
    """Everything that determines a delivery's bytes; its hash is the cache key."""

    tenant_id: str
    date_from: str
    date_to: str
    delivery: str = "parquet"
    rows_per_day: int = 2000
    target_bytes: int | None = None
    timestamp_format: str = "timestamp"
    empty_days: tuple[str, ...] = ()
    day_fractions: tuple[tuple[str, float], ...] = ()
    schema_change_from: str | None = None
    schema_change: str = "type"
    schema_change_until: str | None = None

    def days(self) -> list[dt.date]:
        first, last = dt.date.fromisoformat(self.date_from), dt.date.fromisoformat(self.date_to)
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]

    def rows_on(self, day: dt.date) -> int:
        """Events generated for ``day``: 0 on an empty day, a fraction of ``rows_per_day`` on a scaled one."""
        iso = day.isoformat()
        if iso in self.empty_days:
            return 0
        fraction = dict(self.day_fractions).get(iso)
        return self.rows_per_day if fraction is None else round(self.rows_per_day * fraction)

    def change_for(self, days: list[dt.date]) -> str | None:
        """The schema change a file holding ``days`` carries (a file has one schema: its last day's)."""
        last = days[-1].isoformat()
        if self.schema_change_from is None or last < self.schema_change_from:
            return None
        if self.schema_change_until is not None and last > self.schema_change_until:
            return None
        return self.schema_change

    @property
    def extension(self) -> str:
        return "zip" if self.delivery == "zip" else "parquet"

    def cache_key(self) -> str:
        fields = asdict(self)
        for name, default in _SIGNAL_DEFAULTS.items():  # absent signals keep the keys files were cached under
            if fields[name] == default:
                del fields[name]
        material = {"schema": SCHEMA_VERSION, "pyarrow": pa.__version__, **fields}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


_SIGNAL_DEFAULTS: dict[str, object] = {
    "empty_days": (),
    "day_fractions": (),
    "schema_change_from": None,
    "schema_change": "type",
    "schema_change_until": None,
}


@dataclass(frozen=True)
class CachedFile:
    """A generated delivery on disk and what it contains."""

    path: Path
    size: int
    rows: dict[str, int]


class _Counter:
    def __init__(self) -> None:
        self.rows = dict.fromkeys(TABLES, 0)


def _write_events(
    path: Path, spec: DeliverySpec, tenant: _Tenant, days: list[dt.date], pad_to: int | None, counter: _Counter
) -> list[_DayData]:
    """Write the events of ``days`` (plus padding) to one parquet file; returns the days for the other tables."""
    done: list[_DayData] = []
    change = spec.change_for(days)
    with pa.OSFile(str(path), "wb") as sink:
        writer = _writer(sink, evolve_events(events_schema(spec.timestamp_format).empty_table(), change).schema)
        try:
            for day in days:
                data = _DayData(tenant, day, spec.rows_on(day), spec.timestamp_format, change)
                for table in data.event_batches():
                    writer.write_table(table, row_group_size=EVENTS_PER_BATCH)
                    counter.rows["events"] += table.num_rows
                done.append(data)
            group = 0
            while pad_to is not None and sink.tell() < pad_to:
                rows = max(1, min(PAD_MAX_ROWS, -(-(pad_to - sink.tell()) // _PAD_ROW_OVERHEAD)))
                day = days[group % len(days)]
                seed_parts = (SCHEMA_VERSION, spec.cache_key(), days[0].isoformat(), group)
                table = evolve_events(_padding_table(tenant, day, rows, spec.timestamp_format, seed_parts), change)
                writer.write_table(table, row_group_size=PAD_MAX_ROWS)
                counter.rows["events"] += rows
                group += 1
        finally:
            writer.close()
    return done


def _write_table(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink:
        writer = _writer(sink, table.schema)
        try:
            writer.write_table(table, row_group_size=max(1, table.num_rows))
        finally:
            writer.close()


def _zip_member(zf: zipfile.ZipFile, name: str, source: Path, day: dt.date) -> None:
    info = zipfile.ZipInfo(name, date_time=(day.year, day.month, day.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.file_size = source.stat().st_size  # lets zipfile pick zip64 up front for huge members
    with source.open("rb") as src, zf.open(info, "w") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def generate(spec: DeliverySpec, out_path: Path) -> dict[str, int]:
    """Write the delivery for ``spec`` to ``out_path`` (not atomically: callers write to a temp path).

    Returns rows per table that the delivery contains (``events`` only for a parquet delivery).
    """
    tenant = _Tenant(spec.tenant_id)
    days = spec.days()
    counter = _Counter()
    if spec.delivery == "parquet":
        _write_events(out_path, spec, tenant, days, spec.target_bytes, counter)
        return {"events": counter.rows["events"]}
    with (
        tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".zipparts-") as tmp,
        zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        part = Path(tmp) / "part.parquet"
        for n, day in enumerate(days):
            pad_to = None
            if spec.target_bytes is not None and n == len(days) - 1:
                pad_to = spec.target_bytes - (zf.fp.tell() if zf.fp is not None else 0)
            (data,) = _write_events(part, spec, tenant, [day], pad_to, counter)
            _zip_member(zf, f"events/dt={day.isoformat()}/part-0.parquet", part, day)
            for table_name, table in (("sessions", data.sessions_table()), ("clients", data.clients_table())):
                _write_table(part, table)
                counter.rows[table_name] += table.num_rows
                _zip_member(zf, f"{table_name}/dt={day.isoformat()}/part-0.parquet", part, day)
    return dict(counter.rows)


class FileCache:
    """Generate-once store of deliveries keyed by :meth:`DeliverySpec.cache_key` (plus the damage, if any).

    A damaged delivery is made from the sound one (generated first, through the cache) and cached under a key
    of its own, so the sound file stays available and byte-identical.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.generated = 0  # how many files this instance actually generated (tests assert on it)

    @staticmethod
    def _key(spec: DeliverySpec, damage: Damage | None) -> str:
        if damage is None:
            return spec.cache_key()
        return hashlib.sha256(f"{spec.cache_key()}|{damage.key()}".encode()).hexdigest()[:32]

    def _paths(self, spec: DeliverySpec, damage: Damage | None) -> tuple[Path, Path]:
        key = self._key(spec, damage)
        return self.root / f"{key}.{spec.extension}", self.root / f"{key}.json"

    def get(self, spec: DeliverySpec, damage: Damage | None = None) -> CachedFile | None:
        """The cached delivery, or None if it has not been generated (or is incomplete)."""
        data_path, meta_path = self._paths(spec, damage)
        try:
            meta = json.loads(meta_path.read_text())
            size = data_path.stat().st_size
        except (OSError, ValueError):
            return None
        if meta.get("size") != size:
            return None
        return CachedFile(path=data_path, size=size, rows={k: int(v) for k, v in meta["rows"].items()})

    def ensure(self, spec: DeliverySpec, damage: Damage | None = None) -> CachedFile:
        """Return the delivery, generating it first if needed; concurrent callers share one generation.

        With ``damage`` the file is the sound delivery broken that way; its ``rows`` are the sound file's.
        """
        cached = self.get(spec, damage)
        if cached is not None:
            return cached
        sound = None if damage is None else self.ensure(spec)
        key = self._key(spec, damage)
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock, self._process_lock(key):
            cached = self.get(spec, damage)
            if cached is not None:
                return cached
            if sound is None or damage is None:
                return self._generate(spec, None, lambda tmp: generate(spec, tmp))

            def broken(tmp: Path) -> dict[str, int]:
                apply_damage(damage, sound.path, tmp)
                return dict(sound.rows)

            return self._generate(spec, damage, broken)

    @contextlib.contextmanager
    def _process_lock(self, key: str) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        with (self.root / f"{key}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _generate(
        self, spec: DeliverySpec, damage: Damage | None, write: Callable[[Path], dict[str, int]]
    ) -> CachedFile:
        data_path, meta_path = self._paths(spec, damage)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f".{data_path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            rows = write(tmp)
            size = tmp.stat().st_size
            meta = {"spec": asdict(spec), "size": size, "rows": rows, "file": data_path.name}
            if damage is not None:
                meta["damage"] = asdict(damage)
            meta_tmp = tmp.with_suffix(".json.tmp")
            meta_tmp.write_text(json.dumps(meta, sort_keys=True))
            os.replace(tmp, data_path)
            os.replace(meta_tmp, meta_path)
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".json.tmp").unlink(missing_ok=True)
        self.generated += 1
        return CachedFile(path=data_path, size=size, rows=rows)
