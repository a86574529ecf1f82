#!/usr/bin/env bash
# Creates the S3 buckets unless they exist: the one the ETL writes to (S3_BUCKET), and the one
# the compose cluster profile keeps its checkpoint in (CHECKPOINT_BUCKET, when set).
# A LocalStack ready hook; the moto profile's init service runs it too.
set -euo pipefail

buckets=("${S3_BUCKET:?S3_BUCKET is not set}")
if [[ -n ${CHECKPOINT_BUCKET:-} && $CHECKPOINT_BUCKET != "$S3_BUCKET" ]]; then
  buckets+=("$CHECKPOINT_BUCKET")
fi
region=${AWS_DEFAULT_REGION:-us-east-1}

for bucket in "${buckets[@]}"; do
  if aws s3api head-bucket --bucket "$bucket" 2>/dev/null; then
    echo "bucket $bucket exists: left as it is"
  elif [[ $region == us-east-1 ]]; then  # us-east-1 takes no location constraint
    aws s3api create-bucket --bucket "$bucket" >/dev/null
    echo "bucket $bucket created"
  else
    aws s3api create-bucket --bucket "$bucket" --create-bucket-configuration "LocationConstraint=$region" >/dev/null
    echo "bucket $bucket created in $region"
  fi
done
