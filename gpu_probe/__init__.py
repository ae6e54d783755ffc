"""chainplan GPU probe agent.

Runs on a GPU server, builds one real decoder block of the model with random
weights, measures parameter/KV memory and per-block prefill/decode times with
torch on the real device, measures round trips to the orchestrator, and
reports the figures to the chainplan service (see docs/probe-report.md).

Importing this package does not import torch or Django; the service may import
``gpu_probe.report`` (``validate_report``) without torch installed.
"""

AGENT_NAME = "chainplan-gpu-probe"
__version__ = "0.1.0"
