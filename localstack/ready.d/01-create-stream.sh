#!/usr/bin/env bash
# Creates the Kinesis stream the pipeline reads (STREAM_NAME, SHARD_COUNT shards) unless it exists.
# A LocalStack ready hook; the moto profile's init service runs it too. Plain `aws` with
# AWS_ENDPOINT_URL, not the deprecated `awslocal`, so it runs unchanged against either emulator.
set -euo pipefail

stream=${STREAM_NAME:?STREAM_NAME is not set}
shards=${SHARD_COUNT:-2}

# LocalStack installs and starts its Kinesis backend on the first Kinesis call, and can answer
# 500 while that backend is still starting: give it time, and ask again.
for attempt in {1..30}; do
  aws kinesis list-streams --cli-read-timeout 300 >/dev/null && break
  if ((attempt == 30)); then
    echo "Kinesis did not answer after $attempt attempts" >&2
    exit 1
  fi
  sleep 2
done

if aws kinesis describe-stream-summary --stream-name "$stream" >/dev/null 2>&1; then
  echo "stream $stream exists: left as it is"
else
  aws kinesis create-stream --stream-name "$stream" --shard-count "$shards"
  echo "stream $stream created with $shards shards"
fi
aws kinesis wait stream-exists --stream-name "$stream"
