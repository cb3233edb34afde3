"""``python -m emotalk_cli``: the same as the ``emotalk`` script."""

import sys

from . import main

sys.exit(main())
