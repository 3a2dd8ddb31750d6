"""Transfer benchmark: our ranged parallel transfer against its limits and the code a user would otherwise write.

``python -m bench.run`` (``make bench``) orchestrates; ``python -m bench.variant`` is one measured run in its own
process (so its peak RSS is its own).
"""
