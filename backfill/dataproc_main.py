"""The main file of `gcloud dataproc batches submit pyspark` (a .py file, not a module)."""

import sys

from backfill.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
