"""The ASGI entry point uvicorn imports: `app.asgi:app`."""

from app.http import create_app

app = create_app()
