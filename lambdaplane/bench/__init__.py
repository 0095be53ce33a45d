"""Benchmarks: `lambdaplane bench …` writes JSON and PNG plots; never timed assertions."""
