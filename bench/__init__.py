"""dispatchbot's benchmarks: how fast an answer is, how much it costs, and how that grows.

`python -m bench all` (or `make bench`) runs every part; `python -m bench PART` runs one.
Each part prints a table and writes `bench/results/PART.json` with a description of the
machine. Figures that compare two things are measured in the same run.
"""
