"""``python -m news_etl``: the job (also the script spark-submit runs: see docs/cluster.md)."""

from news_etl.aws import exit_process
from news_etl.job import main

if __name__ == "__main__":
    exit_process(main())
