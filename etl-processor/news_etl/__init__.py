"""news_etl: Kinesis -> PySpark Structured Streaming -> enriched Parquet on S3.

``python -m news_etl`` runs the job (``job``); ``python -m news_etl.tools`` holds the operator
tools. The Kinesis data source (``news_etl.kinesis``) is usable on its own:
``spark.dataSource.register(KinesisDataSource)``.
"""

from news_etl.kinesis import KinesisDataSource

__all__ = ["KinesisDataSource"]
