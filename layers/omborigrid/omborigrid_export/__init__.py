"""omborigrid_export: land OmboriGrid analytics exports in S3.

The library behind the Lambda functions and the ``omborigrid-export`` CLI: API client, job model,
polling bounds, verified streaming transfer, key layout, manifests and settings. No Lambda-specific code
lives here; it logs through the standard ``logging`` module.
"""

__version__ = "0.1.0"
