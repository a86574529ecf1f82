"""``python -m news_etl``: the job (also the script spark-submit runs: see docs/cluster.md)."""

import sys

from news_etl.job import main

if __name__ == "__main__":
    sys.exit(main())
