"""``python -m course_utils <command>``: see :mod:`course_utils.cli`."""

import sys

from .cli import main

sys.exit(main())
