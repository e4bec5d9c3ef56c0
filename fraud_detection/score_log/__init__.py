"""The score log: every scored transaction and its late label, in SQLite or PostgreSQL."""
