"""The command-line entry points: every flag the package reads is parsed here, and nowhere else.

- ``python -m news_etl`` (``news_etl.__main__``): the job, ``cli.job``;
- ``python -m news_etl.tools`` (``news_etl.tools``): the operator tools ``inspect``, ``verify``,
  ``versions``, ``compact`` and ``jars``, ``cli.tools``.

Each ``main`` configures what it prints and returns an exit code; the launchers end the process
with it through ``aws.exit_process``.
"""
