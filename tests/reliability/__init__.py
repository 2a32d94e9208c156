"""Reliability: bad input at every entry point, config parser properties."""
