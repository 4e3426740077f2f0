"""Autotuning: measurements, database, campaigns."""
