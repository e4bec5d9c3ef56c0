"""Online model performance from late labels: ``GET /performance``, gauges and promotion."""
