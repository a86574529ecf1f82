"""``python -m news_etl``: the job (``news_etl.cli.job``); also the script spark-submit runs (docs/cluster.md)."""

from news_etl.aws import exit_process
from news_etl.cli.job import main

if __name__ == "__main__":
    exit_process(main())
