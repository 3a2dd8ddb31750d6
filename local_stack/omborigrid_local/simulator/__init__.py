"""OmboriGrid export API simulator: a loopback HTTP server that serves real parquet, with fault knobs.

Why it exists: the real API documents almost nothing beyond the happy path (no error format, rate limits,
URL lifetime, archive layout...), so the client must survive every plausible behaviour. The simulator makes
each of those behaviours a knob, and lets tests, the demo and benchmarks run without network or accounts.

Usage::

    from omborigrid_local.simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(time_scale=1000), cache_dir=tmp_path) as sim:
        requests.post(f"{sim.base_url}/api/analytics-export-job", json={...},
                      headers={"Authorization": f"Bearer {sim.token}"})

API contract (the seed page plus the choices the simulator makes)
------------------------------------------------------------------
* ``POST /api/analytics-export-job`` ``{"tenantId","dataDateFrom","dataDateTo"}`` with
  ``Authorization: Bearer <token>`` -> 200 (or ``create_status`` 201) job JSON. 401 ``{"message"}`` for a
  missing/malformed/wrong token, ``"token expired"`` for one in ``expired_tokens``; with ``tenant_tokens`` a tenant
  has a token of its own (403 creating, 404 reading its jobs with another one). 400 ``{"message"}`` for
  a non-object body, missing field, bad date, from > to, or a bad tenantId (``[A-Za-z0-9_-]{1,64}``; 24-char
  lowercase hex when ``strict_tenant_ids``).
* ``GET /api/analytics-export-job/<id>`` -> job JSON, or 404 ``{"message": "Job not found"}`` (also once
  ``jobExpiryDate`` has passed: archived jobs are gone).
* Job JSON: ``status, id, tenantId, jobExpiryDate, dataDateFrom, dataDateTo, createdAt, updatedAt, filename``
  (+ ``downloadUrl``, ``fileSize`` when ``done``). Times look like ``2023-09-18T19:19:04.449Z``. ``id`` is a
  24-hex ObjectId. Status is ``queued`` for ``queue_seconds``, then ``processing`` for ``processing_seconds``
  (None: forever), then ``final_status``. Timing, ``final_status`` and the data knobs are fixed when the job
  is created. The delivery is generated in a background thread started at POST (POST stays fast); a job whose
  time is up stays ``processing`` until its file exists.
* ``downloadUrl`` = ``{base}/download/<id>/<filename>?X-Sim-Expires=<sim epoch>&X-Sim-Signature=<hmac>``,
  fresh on every GET, valid ``url_ttl_seconds``. ``fileSize`` = real size + ``file_size_delta``.
* ``GET|HEAD /download/...``: 404 S3-style XML (``NoSuchKey``) for an unknown/not-done job or wrong filename;
  403 XML ``AccessDenied`` for a bad signature or expiry ("Request has expired"). Serves
  ``Content-Length``, ``Content-Type: application/octet-stream``, ``Accept-Ranges: bytes``, ``ETag``; a single
  ``Range`` (``a-b``, ``a-``, ``-n``) -> 206 + ``Content-Range``; unsatisfiable -> 416 ``bytes */total``;
  multi-range or malformed Range -> 200 full body. Bodies go out with ``socket.sendfile`` unless a drop or
  bandwidth fault needs chunked writes.
* Simulated time: ``time_scale`` simulated seconds per real second, applied to job timing, URL expiry and
  ``jobExpiryDate``; changing it keeps simulated time continuous. ``Simulator(clock=...)`` injects a clock.

Admin (no token, not counted in stats): ``GET /_sim/stats``, ``GET|POST /_sim/config`` (JSON of knobs),
``POST /_sim/reset`` (stats, jobs and armed faults), ``GET /_sim/jobs``,
``GET /_sim/expected-rows?tenantId=&dataDateFrom=&dataDateTo=``.

Fault knobs
-----------
``fail_next`` is a queue of specs for API requests (POST/GET job; never downloads or admin). Only the head
spec is considered: if it matches the request's method it is applied and its ``count`` decremented (removed at
0); otherwise the request is served normally and the spec waits. Spec keys:

* ``status`` (int): respond with this status. Body: ``body`` verbatim if given (e.g. ``"not json"``), else
  ``{"message": <reason phrase>}``; ``content_type`` (default JSON), ``headers`` (extra headers).
* ``retry_after`` (seconds, or a string sent verbatim): ``Retry-After`` header.
* ``count`` (default 1), ``methods`` (e.g. ``["POST"]``; default all).
* ``after_create`` (bool): do the real work first (the job IS created), then answer ``status``
  (default 500) - an ambiguous failure.
* ``delay`` (real seconds): stall before answering; alone, the normal response follows the stall.
* ``close`` (bool): close the connection without any response (after the work if ``after_create``).

Example: ``[{"status": 429, "retry_after": 2, "count": 3}, {"status": 503},
{"status": 500, "methods": ["POST"], "after_create": true}, {"delay": 5.0}]``.

Downloads: ``drop_after_bytes`` + ``drop_count`` (next N GET bodies are cut after that many bytes, FIN, no
more data); ``expire_next_downloads`` (next N GET/HEAD downloads -> 403 even if signed correctly);
``ignore_range`` (always 200 full body); ``bandwidth_bytes_per_sec`` (per response pacing). Consumable knobs
are decremented as they fire, so ``config`` shows what is still armed; setting ``drop_after_bytes`` alone
re-arms a used-up ``drop_count`` to 1.

Adversarial answers and deliveries (``identity_change``, ``truncated_parquet``, ``foreign_tenant``,
``foreign_dates``, ``empty_file``, ``garbled_status``, ``slow_drip``, ``bad_location``, ``archive_bad_member``,
``zip_bomb``, ``bad_zip``) and the lake's own signals (``schema_change_from``, ``empty_day``,
``volume_fraction``, for ``signals_tenant``): see :class:`SimulatorConfig`, which documents each value; the broken
files are made by :mod:`omborigrid_local.simulator.damage` from the sound ones.

Data: see :mod:`omborigrid_local.simulator.data` (tables, timestamps as ``timestamp[us, UTC]`` by default or
7-digit strings with ``timestamp_format="string"``, zip members ``<table>/dt=YYYY-MM-DD/part-0.parquet``,
``target_bytes`` padding, on-disk cache).

Stats (:class:`SimulatorStats`): ``requests``, ``by_route`` (``"POST /api/analytics-export-job"``,
``"GET /api/analytics-export-job"``, ``"GET /download"``, ``"HEAD /download"``, ``"OTHER"``), ``by_status``,
``jobs_created``, ``jobs_created_by_key`` (``"tenant/from/to"``), ``download_ranges`` (Range header of each
GET download, None if absent), ``download_bytes_sent``, ``connections_dropped``, ``live_jobs``,
``max_live_jobs`` (exact, from the jobs' simulated queued/processing intervals since the last stats reset),
``faults_served`` (fail_next uses, drops and forced expiries).
"""

from .cli import main
from .config import SimulatorConfig, SimulatorStats
from .data import DeliverySpec, FileCache
from .server import Simulator, default_cache_dir, other_job_id, other_tenant_id

__all__ = [
    "DeliverySpec",
    "FileCache",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "default_cache_dir",
    "main",
    "other_job_id",
    "other_tenant_id",
]
