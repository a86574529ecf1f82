"""``python -m news_etl.tools``: the operator tools inspect, verify, versions, compact and jars.

The subcommands and their flags are in ``news_etl.cli.tools``; docs/operations.md says what each
is for and its exit codes.
"""

from news_etl.aws import exit_process
from news_etl.cli.tools import main

if __name__ == "__main__":
    exit_process(main())
