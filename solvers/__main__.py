import os
import sys

from .cli import main

try:
    sys.exit(main())
except BrokenPipeError:
    # the reader (e.g. `| head`) went away: exit quietly like other Unix tools
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
