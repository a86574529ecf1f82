#!/usr/bin/env bash
# Creates the S3 bucket the ETL writes to (S3_BUCKET) unless it exists.
# A LocalStack ready hook; the moto profile's init service runs it too.
set -euo pipefail

bucket=${S3_BUCKET:?S3_BUCKET is not set}
region=${AWS_DEFAULT_REGION:-us-east-1}

if aws s3api head-bucket --bucket "$bucket" 2>/dev/null; then
  echo "bucket $bucket exists: left as it is"
elif [[ $region == us-east-1 ]]; then  # us-east-1 takes no location constraint
  aws s3api create-bucket --bucket "$bucket" >/dev/null
  echo "bucket $bucket created"
else
  aws s3api create-bucket --bucket "$bucket" --create-bucket-configuration "LocationConstraint=$region" >/dev/null
  echo "bucket $bucket created in $region"
fi
