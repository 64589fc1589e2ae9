"""onnxruntime, imported one way for all of firstwords: with its telemetry off.

Some onnxruntime builds (1.32's Linux wheel among them) carry Microsoft's 1DS telemetry client: from the moment
the library is imported it keeps an event queue under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and, a
few seconds later, looks up and contacts Microsoft's event host. It lives in C++, so Python's audit hooks never
see it. Measured on 1.32: the environment variable ORT_DISABLE_TELEMETRY=1 stops both, but only when it is set
BEFORE `import onnxruntime`; `onnxruntime.disable_telemetry_events()` alone, or the variable set after the
import, stops neither. Hence two steps:

- `firstwords.edge` (its __init__) calls `disable_telemetry_env()` when it is first imported, which is before
  any firstwords code imports onnxruntime;
- every session firstwords makes gets its onnxruntime from `onnxruntime()` here, which sets the variable again,
  calls onnxruntime's own `disable_telemetry_events()` and warns once if onnxruntime was imported by someone
  else before the variable was set (then only the user can turn it off: ORT_DISABLE_TELEMETRY=1 in the
  environment).

`telemetry_state()` says which of these held, for `firstwords doctor`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"
# Where onnxruntime's telemetry keeps its event queue (relative to the home directory).
TELEMETRY_CACHE = Path(".cache") / "Microsoft" / "DeveloperTools" / ".onnxruntime"

# Whether onnxruntime was already imported, with telemetry on, when firstwords first looked (None: not yet).
_imported_with_telemetry: bool | None = None
_warned = False
_api_called = False


def disable_telemetry_env() -> None:
    """Set ORT_DISABLE_TELEMETRY=1 for this process (onnxruntime reads it when it is imported)."""
    global _imported_with_telemetry
    if _imported_with_telemetry is None:
        _imported_with_telemetry = "onnxruntime" in sys.modules and os.environ.get(TELEMETRY_ENV) != "1"
    os.environ[TELEMETRY_ENV] = "1"


def onnxruntime() -> Any:
    """The onnxruntime module with telemetry off: use it for every InferenceSession firstwords makes."""
    global _warned, _api_called
    disable_telemetry_env()
    import onnxruntime as ort

    off = getattr(ort, "disable_telemetry_events", None)
    if off is not None:
        off()
        _api_called = True
    if _imported_with_telemetry and not _warned:
        _warned = True
        log.warning("onnxruntime was imported before firstwords could turn its telemetry off; to be sure nothing "
                    "is sent, set %s=1 in the environment before starting Python", TELEMETRY_ENV)
    return ort


def telemetry_state() -> dict[str, Any]:
    """What firstwords did about onnxruntime's telemetry in this process, and what is left on disk."""
    home = Path(os.path.expanduser("~"))
    queue = home / TELEMETRY_CACHE
    return {"env": os.environ.get(TELEMETRY_ENV), "api_called": _api_called,
            "imported_before": bool(_imported_with_telemetry),
            "queue": str(queue) if queue.exists() else None}
