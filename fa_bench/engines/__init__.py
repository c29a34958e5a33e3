"""Training engines: what a step, an evaluation and a probe are, under the one loop (fa_bench.trainer)."""
