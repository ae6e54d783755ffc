"""``python -m testbed``: run plans on a real PETALS swarm (``--help`` lists the options)."""

from testbed.cli import cli

raise SystemExit(cli())
