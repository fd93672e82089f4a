"""``python -m microlens``: the ``microlens`` command."""

import sys

from microlens.cli import main

sys.exit(main())
