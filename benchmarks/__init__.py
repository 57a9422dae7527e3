"""Benchmarks: tool-call latency (``bench_tools``) and telemetry cost (``bench_sampler``)."""
