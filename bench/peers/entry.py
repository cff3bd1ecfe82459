"""An entry script as the peers call it: loaded once per process, its ``init()`` run once.

Ray's actors and Dask's worker processes import this module by name (the peers' commands put
this folder on ``PYTHONPATH``), so the cache below lives as long as the process does, the
way the engine's workers keep a script loaded between mini-batches.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from types import ModuleType


@functools.cache
def load(script: str) -> ModuleType:
    name = os.path.splitext(os.path.basename(script))[0]
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if hasattr(module, "init"):
        module.init()
    return module
