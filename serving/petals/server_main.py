"""Entry point for one PETALS server of a private, offline swarm (runs in .venv-petals).

Same arguments as ``python -m petals.cli.run_server``; PETALS' start-up version check (an
HTTPS request to the package index) is skipped, so a server of the testbed never tries to
leave loopback, ``CHAINPLAN_CUDA_MEMORY_FRACTION`` caps the process's GPU memory, and SIGINT
is a clean leave even where the parent ignored it.
"""

import sys


def main() -> None:
    import os
    import signal
    # SIGINT is a clean leave (PETALS announces the server offline, then stops), even when whoever started us
    # ignored it: a background job of a non-interactive shell starts with SIGINT ignored, and Python then
    # installs no handler of its own, so the server would never leave
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
