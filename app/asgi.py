"""The ASGI entry point uvicorn imports: `app.asgi:app`."""

from app.http import create_app, tune_logging

tune_logging()
app = create_app()
