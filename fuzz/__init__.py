"""Fuzzing Lockgate: the targets (strategies + properties) that tests/test_fuzz.py runs at CI
size and `fuzz/run.py` runs for minutes at a time. See fuzz/README.md."""
