"""`python -m commands …` runs the `owtrain` command with this interpreter (the processes owtrain starts use it)."""

import sys

from commands.main import main

sys.exit(main())
