"""Persistence: the SQL registry and the content-addressed artifact store."""
