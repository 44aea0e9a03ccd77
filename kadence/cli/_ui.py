"""`kadence ui`: serve the web UI (kadence.ui) for the deployment the connection options name."""

from __future__ import annotations

import argparse

from ._connect import settings_from_args
from ._errors import EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    # The broker is not required to start: the pages say when it cannot be reached (and recover
    # when it comes back), so the UI can be opened before the engine.
    from kadence.ui import serve

    settings = settings_from_args(args)
    print(
        f"kadence ui: http://{args.host}:{args.port}/ (broker {settings.bootstrap}, domain {args.domain})",
        flush=True,
    )
    serve(settings, host=args.host, port=args.port, domain=args.domain)
    return EXIT_OK
