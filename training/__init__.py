"""Training app: ``python -m training`` (Hydra; configs in ``configs/``)."""
