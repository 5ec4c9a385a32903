"""The console on the local platform: ``python -m tuneloop.local.console_server``.

`tuneloop up` starts this as a child process with the Console stack's role credentials and
the emulator's endpoint in its environment, as AWS runs the console's Lambda under its role.
Names come from the stacks' outputs; users from the file `tuneloop up` wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

PLATFORM_NAMES_ENV = "PLATFORM_NAMES"
"""JSON of :class:`PlatformNames` fields, as the Console stack sets it for its Lambda."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneloop.local.console_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", type=Path, required=True, help="JSON: user → role, password")
    parser.add_argument("--stage", default="local")
    args = parser.parse_args(argv)

    import uvicorn

    from tuneloop.console.app import create_app
    from tuneloop.console.auth_local import LocalUsers
    from tuneloop.operations.names import PlatformNames

    users = json.loads(args.users.read_text(encoding="utf-8"))
    auth = LocalUsers.from_passwords(
        {name: (str(user["role"]), str(user["password"])) for name, user in users.items()}
    )
    given = os.environ.get(PLATFORM_NAMES_ENV)
    names = PlatformNames(**json.loads(given)) if given else PlatformNames.for_stage(args.stage)
    app = create_app(
        names,
        auth,
        secret_key=secrets.token_hex(32),  # sessions end with the platform
        secure_cookies=False,  # plain HTTP on loopback
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
