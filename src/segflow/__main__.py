"""``python -m segflow``: the same command as ``segflow``."""

import sys

from segflow.cli.main import main

sys.exit(main())
