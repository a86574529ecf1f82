"""Show what the ETL wrote to a bucket: its objects, row counts, quarantine reasons, a few rows.

    python etl-processor/inspect_output.py --bucket news-data        (make inspect)

Reads the Parquet back with pyarrow, exactly as a training job would. The endpoint, region and
credentials come from the standard AWS settings (AWS_ENDPOINT_URL for an emulator).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from sink import s3_filesystem

SAMPLE_COLUMNS = ["article_id", "published_at", "word_count", "title"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", default=os.environ.get("S3_BUCKET") or None, help="the bucket (env S3_BUCKET)")
    parser.add_argument("--rows", type=int, default=5, help="enriched rows to print (default 5)")
    args = parser.parse_args(argv)
    if not args.bucket:
        parser.error("--bucket is required (or set S3_BUCKET)")
    return args


def list_objects(filesystem: pafs.FileSystem, bucket: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(bucket, recursive=True, allow_not_found=True)
    return [info for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File]


def dataset(filesystem: pafs.FileSystem, bucket: str, kind: str, objects: list[pafs.FileInfo]) -> ds.Dataset | None:
    """The ``enriched`` or ``quarantine`` table among the bucket's ``objects``, if any file exists."""
    base = f"{bucket}/{kind}"
    files = [info.path for info in objects if info.path.startswith(f"{base}/") and info.path.endswith(".parquet")]
    if not files:
        return None
    return ds.dataset(files, filesystem=filesystem, format="parquet", partitioning="hive",
                      partition_base_dir=base)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    filesystem = s3_filesystem()
    try:
        objects = list_objects(filesystem, args.bucket)
    except OSError as error:
        print(f"inspect: error: cannot list s3://{args.bucket}: {error}", file=sys.stderr)
        return 1
    print(f"s3://{args.bucket}: {len(objects)} objects")
    for info in objects:
        print(f"  {info.size:>10,}  {info.path.removeprefix(args.bucket + '/')}")
    enriched, quarantine = (dataset(filesystem, args.bucket, kind, objects) for kind in ("enriched", "quarantine"))
    print(f"enriched rows: {enriched.count_rows() if enriched else 0}")
    print(f"quarantined rows: {quarantine.count_rows() if quarantine else 0}")
    if quarantine:
        reasons = Counter(quarantine.to_table(columns=["error"]).column("error").to_pylist())
        for reason, count in reasons.most_common():
            print(f"  {count:>8,}  {reason}")
    if enriched:
        print(f"first {args.rows} enriched rows:")
        print(enriched.head(args.rows, columns=[*SAMPLE_COLUMNS, "dt"]).to_pandas().to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
