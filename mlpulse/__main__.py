"""`python -m mlpulse` is the same as the `mlpulse` command."""

import sys

from mlpulse.cli import main

sys.exit(main())
