"""Entry point for one PETALS server of a private, offline swarm (runs in .venv-petals).

Same arguments as ``python -m petals.cli.run_server``; the only change is that PETALS'
start-up version check (an HTTPS request to the package index) is skipped, so a server
of the testbed never tries to leave loopback.
"""

import sys


def main() -> None:
    import petals.cli.run_server as run_server
    run_server.validate_version = lambda: None
    sys.argv[0] = "petals.cli.run_server"
    run_server.main()


if __name__ == "__main__":
    main()
