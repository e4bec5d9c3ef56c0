"""Real processes for tests and benchmarks: a `bentoml serve` (or any HTTP server) in its own
process group, and a PostgreSQL 15 server on a temporary folder."""
