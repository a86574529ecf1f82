"""Read a version of the enriched Delta table as a training job would, in a process of its own.

    python -m tests.support.readers READER BUCKET VERSION   (VERSION: a number, or "latest")

prints the article ids it read, as a JSON list. READER is one of ``READERS``: each is the way
docs/reading.md shows. The ``*-training`` readers take the training set's views instead, as
docs/reading.md's "A training set" recipes do, and print them as a JSON object: the validation
split's ids, the train split's first article of each cluster, and each train article's weight.
A process of its own, because what a trainer needs is also that the
reading process exits 0 (delta-rs and pyarrow have aborted at exit: delta-io/delta-rs#2184, apache/arrow#41087).
The endpoint and credentials come from the AWS_* environment, as for the job.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlparse


def storage_options() -> dict[str, str]:
    return {"AWS_ALLOW_HTTP": "true"} if os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://") else {}


def with_deltalake(uri: str, version: int | None) -> list[str]:
    """deltalake's file list, read with pyarrow (its own dataset scan can abort at exit)."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    files = DeltaTable(uri, version=version, storage_options=storage_options()).file_uris()
    filesystem = pafs.S3FileSystem(endpoint_override=os.environ.get("AWS_ENDPOINT_URL"))
    dataset = ds.dataset([f.removeprefix("s3://") for f in files], filesystem=filesystem, format="parquet")
    return dataset.to_table(columns=["article_id"]).column("article_id").to_pylist()


def with_polars(uri: str, version: int | None) -> list[str]:
    import polars as pl

    return pl.read_delta(uri, version=version, storage_options=storage_options())["article_id"].to_list()


def duckdb_connection():
    """DuckDB with the delta, httpfs and aws extensions from their PyPI packages, and the S3 secret."""
    import duckdb
    import duckdb_ext

    extensions = os.path.join(duckdb_ext.__path__[0], "extensions")  # the PyPI packages' extension folder
    con = duckdb.connect(config={"extension_directory": extensions, "autoinstall_known_extensions": False})
    for name in ("httpfs", "aws", "delta"):
        con.load_extension(name)
    endpoint = urlparse(os.environ.get("AWS_ENDPOINT_URL") or "https://s3.amazonaws.com")
    con.execute(
        "CREATE SECRET s3 (TYPE s3, PROVIDER credential_chain, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?, REGION ?)",
        [endpoint.netloc, endpoint.scheme == "https", os.environ.get("AWS_REGION", "us-east-1")],
    )
    return con


def with_duckdb(uri: str, version: int | None) -> list[str]:
    """DuckDB's delta extension reads the latest version; a pinned one is its file list (DuckDB 1.4's
    delta_scan takes no version)."""
    from deltalake import DeltaTable

    con = duckdb_connection()
    if version is None:
        rows = con.execute("SELECT article_id FROM delta_scan(?)", [uri]).fetchall()
    else:
        files = DeltaTable(uri, version=version, storage_options=storage_options()).file_uris()
        rows = con.execute("SELECT article_id FROM read_parquet(?)", [files]).fetchall()
    return [article_id for (article_id,) in rows]


def training_with_polars(uri: str, version: int | None) -> dict:
    import polars as pl

    articles = pl.read_delta(uri, version=version, storage_options=storage_options())
    validation = articles.filter(pl.col("split") == "validation")
    train = articles.filter(pl.col("split") == "train")
    one_per_cluster = train.filter(pl.col("first_in_cluster"))
    weighted = train.with_columns((1 / pl.len().over("cluster_id")).alias("weight"))
    return {"validation": validation["article_id"].to_list(),
            "one_per_cluster": one_per_cluster["article_id"].to_list(),
            "weights": dict(zip(weighted["article_id"], weighted["weight"], strict=True))}  # fmt: skip


def training_with_duckdb(uri: str, version: int | None) -> dict:
    """The latest version (``delta_scan``); the same queries read a pinned version's file list."""
    con = duckdb_connection()
    scan = "delta_scan(?)"
    validation = con.execute(f"SELECT article_id FROM {scan} WHERE split = 'validation'", [uri]).fetchall()
    one_per_cluster = con.execute(f"SELECT article_id FROM {scan} WHERE split = 'train' AND first_in_cluster",
                                  [uri]).fetchall()  # fmt: skip
    weights = con.execute(f"SELECT article_id, 1.0 / count(*) OVER (PARTITION BY cluster_id) AS weight FROM {scan} "
                          "WHERE split = 'train'", [uri]).fetchall()  # fmt: skip
    return {"validation": [row[0] for row in validation], "one_per_cluster": [row[0] for row in one_per_cluster],
            "weights": {article_id: float(weight) for article_id, weight in weights}}  # fmt: skip


READERS = {"deltalake": with_deltalake, "polars": with_polars, "duckdb": with_duckdb,
           "polars-training": training_with_polars, "duckdb-training": training_with_duckdb}  # fmt: skip


def main(reader: str, bucket: str, version: str) -> int:
    read = READERS[reader](f"s3://{bucket}/enriched", None if version == "latest" else int(version))
    print(json.dumps(sorted(read) if isinstance(read, list) else read))
    return 0


if __name__ == "__main__":
    # The job's entry points end the same way (news_etl.aws.exit_process): pyarrow's atexit
    # shutdown of the AWS SDK can abort a process whose work is done.
    code = main(*sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
