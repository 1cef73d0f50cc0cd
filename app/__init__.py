"""Composition root: settings, the Starlette app, the CLI and the demo seed."""
