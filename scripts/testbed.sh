#!/usr/bin/env bash
# Run chainplan plans on a real PETALS swarm (loopback) and compare predicted with measured
# response times.  Writes bench/results/testbed.md + .csv + .png + .json; the last stdout
# line is one JSON object {"algorithms": {...}}.  --help lists the options.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_bootstrap.sh dev,probe >&2
bash scripts/install_petals.sh >&2
exec python -m testbed "$@"
