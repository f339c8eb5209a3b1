"""``python -m segflow.cli``: the same command as ``segflow``."""

import sys

from segflow.cli.main import main

sys.exit(main())
