"""The benchmarks behind BENCHMARKS.md, run from the repository root as modules
(``python -m bench.bench_etl``); drain.py and naive.py are the contenders they launch."""
