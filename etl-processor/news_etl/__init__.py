"""news_etl: Kinesis -> PySpark Structured Streaming -> enriched Delta Lake tables (or plain Parquet) on S3.

``python -m news_etl`` runs the job (``job``); ``python -m news_etl.tools`` holds the operator
tools; their flags are parsed in ``news_etl.cli``. The Kinesis data source (``news_etl.kinesis``)
is usable on its own: ``spark.dataSource.register(KinesisDataSource)``.
"""

from news_etl.kinesis import KinesisDataSource

__all__ = ["KinesisDataSource"]
