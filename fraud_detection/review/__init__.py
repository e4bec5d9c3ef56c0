"""The analysts' review queue: flagged transactions, their features and explanations, leased
to one reviewer at a time, closed by a label through ``POST /feedback``."""
