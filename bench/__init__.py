"""pgwarden benchmarks: `python -m bench [name ...]` (see `bench.__main__.BENCHMARKS`)."""
