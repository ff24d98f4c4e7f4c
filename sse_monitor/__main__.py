"""`python -m sse_monitor`: the command line (cli.py)."""

import sys

from sse_monitor.cli import main

sys.exit(main())
