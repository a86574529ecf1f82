"""What the tests (and the benchmarks) share: emulator processes, the compose harness, the
reference contract, output checks, and the services' entry points run as subprocesses.

Test modules import from here, never from each other or from a conftest; fixtures stay in the
conftest.py nearest the tests that use them.
"""
