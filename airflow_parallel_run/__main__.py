"""``python -m airflow_parallel_run`` is ``parallel-run``."""

import sys

from .cli import main

sys.exit(main())
