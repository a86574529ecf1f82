"""``python -m news_populate``: put fake articles into a Kinesis stream."""

import sys

from news_populate.cli import main

if __name__ == "__main__":
    sys.exit(main())
