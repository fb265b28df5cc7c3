"""Evaluation protocol, metrics, summary tables and sweep callbacks."""
