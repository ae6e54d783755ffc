"""Deprecated: the PETALS testbed is the top-level package ``testbed`` (``python -m testbed``).

``serving.testbed.run``, ``.routes`` and ``.dispatcher`` remain as shims that warn and re-export."""
