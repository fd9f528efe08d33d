"""`python -m xitui.server --host H --port P`: the server in the foreground (xitui/server/serve.py)."""

from __future__ import annotations

import argparse
import os
import sys

from xitui.core.config import DEFAULT_HOST, DEFAULT_PORT, load_config, split_list
from xitui.core.errors import XituiError
from xitui.server.serve import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xitui.server")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--allowed-hosts", default="", help="Comma-separated hosts to serve besides loopback.")
    parser.add_argument("--allowed-origins", default="", help="Comma-separated origins web pages may call from.")
    parser.add_argument("--max-body-mib", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        settings = load_config()
        api_key = os.environ.get("XITUI_SERVER_API_KEY") or settings.api_key
        serve(args.host, args.port, api_key, args.log_level, allowed_hosts=split_list(args.allowed_hosts),
              allowed_origins=split_list(args.allowed_origins), max_body_mib=args.max_body_mib, settings=settings)
    except XituiError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
