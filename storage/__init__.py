"""Persistence: SQLAlchemy models, queries, migrations and importers."""
