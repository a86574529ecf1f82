"""news_populate: realistic fake news articles, with chosen shares of invalid and duplicate records,
put into a Kinesis stream.

``articles`` makes the records (pure, seeded); ``producer`` puts them (batching, partial-failure
retry, pacing); ``cli`` is the command line, ``python -m news_populate``.
"""
