"""Entry point for one PETALS server of a private, offline swarm (runs in .venv-petals).

Same arguments as ``python -m petals.cli.run_server``; PETALS' start-up version check (an
HTTPS request to the package index) is skipped, so a server of the testbed never tries to
leave loopback, and ``CHAINPLAN_CUDA_MEMORY_FRACTION`` caps the process's GPU memory.
"""

import sys


def main() -> None:
    import os
    fraction = os.environ.get("CHAINPLAN_CUDA_MEMORY_FRACTION")
    if fraction:   # cap this server's share of the GPU (several servers share one device)
        import torch
        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(float(fraction))
    import petals.cli.run_server as run_server
    run_server.validate_version = lambda: None
    sys.argv[0] = "petals.cli.run_server"
    run_server.main()


if __name__ == "__main__":
    main()
