"""What a running ``recengine serve`` was started with, for the commands that change it live.

``recengine serve`` writes ``<project>/.recengine-serve.json`` once its domains are up and
removes it when it stops; ``recengine deploy`` reads it so that a new bundle or snapshot is
deployed with the same options. Serve then only calls ``reconfigure`` on the live replicas
(the options that would restart them are unchanged), so no request is dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recengine.errors import NotFoundError

STATE_FILE = ".recengine-serve.json"


@dataclass
class ServeState:
    project: str
    host: str
    port: int
    cpus_per_replica: float
    replicas: int
    access_log: bool
    require_key_for_reads: bool = False
    create_items: bool = False
    pid: int = 0
    address: str = ""  # the Ray cluster serving (what `recengine deploy` joins)

    def app_options(self, store: str | Path, keys: str | Path) -> dict[str, Any]:
        """``domain_application`` keyword options besides the domain, bundle, snapshot and CPUs."""
        return {"replicas": self.replicas, "access_log": self.access_log, "store": store, "keys": keys,
                "require_key_for_reads": self.require_key_for_reads, "create_items": self.create_items}


def state_path(project: str | Path) -> Path:
    return Path(project) / STATE_FILE


def write_state(project: str | Path, state: ServeState) -> None:
    state.pid = os.getpid()
    path = state_path(project)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(temp, path)


def read_state(project: str | Path) -> ServeState:
    """The running server's options; ``NotFoundError`` when nothing serves the project."""
    path = state_path(project)
    try:
        raw = json.loads(path.read_text())
        state = ServeState(**raw)
    except FileNotFoundError:
        raise NotFoundError(f"nothing is serving {project} (no {path}); start it with "
                            f"`recengine serve --project {project}`") from None
    except (ValueError, TypeError) as exc:
        raise NotFoundError(f"{path} is not a serve state file ({exc}); restart `recengine serve`") from None
    if state.pid and not _alive(state.pid):
        raise NotFoundError(f"the `recengine serve` that wrote {path} (PID {state.pid}) is not running; start it "
                            f"with `recengine serve --project {project}`")
    return state


def clear_state(project: str | Path) -> None:
    state_path(project).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
