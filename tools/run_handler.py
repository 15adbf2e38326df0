"""Run the Lambda handler in this process, the way `sam local invoke` would in a container.

    python -m tools.run_handler [--event events/scheduled.json] [--now EPOCH_SECONDS]

Reads the same environment variables as the function (see events/env.json.example). `--now` pins
the bridge's clock, which the simulators' virtual clock needs; leave it out against real services.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LocalContext:
    function_name: str = "SyncFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:SyncFunction"
    aws_request_id: str = "local-invoke"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def invoke(event: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "functions" / "sync"))
    import app  # the function's handler module, exactly as deployed
    from linkup_sync.runtime import Dependencies

    if now is not None:
        app.DEPENDENCIES = Dependencies.from_env(os.environ, clock=lambda: now)
    result: dict[str, Any] = app.handler(event, LocalContext())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--event", default=str(ROOT / "events" / "scheduled.json"))
    parser.add_argument("--now", type=float, default=None)
    args = parser.parse_args(argv)
    event = json.loads(Path(args.event).read_text())
    from linkup_sync.errors import LinkupSyncError

    started = time.monotonic()  # "invocation_s": what Lambda's Timeout counts (the imports are the init)
    try:
        result = invoke(event, args.now)
    except LinkupSyncError as exc:  # logged by the handler with its reason; a known failure, not a crash
        failed = {"error": exc.reason, "needs_person": exc.needs_person, "message": exc.message}
        print(json.dumps({**failed, "invocation_s": round(time.monotonic() - started, 3)}))
        return 1
    print(json.dumps({"result": result, "invocation_s": round(time.monotonic() - started, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
