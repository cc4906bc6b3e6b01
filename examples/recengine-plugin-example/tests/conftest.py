"""Run the plugin's tests from a source checkout too: put ``src`` on the path when the
package is not installed (installed, the entry point makes recengine find it as well)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("recengine_gru") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
