"""Benchmarks: serving performance (`serving`) with Locust, and raw ONNX Runtime throughput."""
