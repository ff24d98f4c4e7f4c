import sys

from sse_monitor.cli import main

sys.exit(main())
