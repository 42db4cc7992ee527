"""``python -m core.api``: serve the REST API with uvicorn on OPTIMUS_API_HOST:OPTIMUS_API_PORT."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from core.api.app import create_app
    from core.config import get_settings
    from core.errors import ConfigError
    from core.logs import configure_logging

    configure_logging()

    try:
        settings = get_settings()
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m core.api", description="Serve the Optimus REST API.")
    parser.add_argument("--host", default=settings.api_host, help=f"default {settings.api_host} (OPTIMUS_API_HOST)")
    parser.add_argument("--port", type=int, default=settings.api_port,
                        help=f"default {settings.api_port} (OPTIMUS_API_PORT)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    # One worker process: embedded storage (Qdrant Edge) can be opened by one process only.
    uvicorn.run(create_app(settings=settings), host=args.host, port=args.port, log_level=args.log_level,
                proxy_headers=False, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
