"""`kadence ui`: a web UI for workflows, their histories and their children (docs/ui.md).

    from kadence.ui import create_app
    app = create_app(settings)          # an ASGI app; `kadence ui` serves it with uvicorn

Pages are rendered on the server (Starlette + Jinja2) and updated with htmx, vendored in
`static/` so that the wheel needs no build step; live updates are server-sent events fed by a tail
of the visibility topic.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app", "serve"]


def serve(settings: object, host: str = "127.0.0.1", port: int = 8080, domain: str = "default") -> None:
    """Serve the UI until interrupted (uvicorn)."""
    import uvicorn

    from kadence.streams.settings import Settings

    assert isinstance(settings, Settings)
    uvicorn.run(create_app(settings, domain), host=host, port=port, log_level="warning")
