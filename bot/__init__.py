"""Composition root: settings, engine, channels, web server, delivery and the CLI."""
