"""SideInput: a file or folder every worker needs (a model, a label list), fetched once per node."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..storage import local_path
from .files import is_remote, path_text


@dataclass
class SideInput:
    """A path (or fsspec URL) made available to the entry script under ``name``.

    When a SideInput appears in ``arguments`` it is replaced by its local path.
    """

    path: str
    name: str = ""  # the path's last part when not given
    storage_options: dict[str, Any] = field(default_factory=dict)
    conn_id: str | None = None

    def __post_init__(self) -> None:
        self.path = path_text(self.path)
        if not isinstance(self.path, str):
            raise InputError(f"SideInput: path {self.path!r}: give a path or URL")
        if not self.path:
            raise InputError("SideInput: path must not be empty")
        if not self.name:
            self.name = os.path.basename(self.path.rstrip("/")) or "side_input"
        if not isinstance(self.name, str) or "/" in self.name or self.name in (".", ".."):
            raise InputError(f"SideInput name {self.name!r}: must be a plain name")

    def check(self) -> None:
        """Raise InputError naming the side input when its path does not exist."""
        if not is_remote(self.path):
            if not os.path.exists(local_path(self.path)):
                raise InputError(f"side input {self.name!r}: {self.path!r} does not exist")
            return
        import fsspec

        from ..storage import describe_storage_error

        try:
            fs, root = fsspec.core.url_to_fs(self.path, **self.storage_options)
            found = fs.exists(root)
        except Exception as exc:
            raise InputError(f"side input {self.name!r}: {describe_storage_error(self.path, exc)}") from None
        if not found:
            raise InputError(f"side input {self.name!r}: {self.path!r} does not exist")

    def fetch(self, cache_dir: str) -> str:
        """The local path of this side input, fetched into ``cache_dir`` if it is remote."""
        if not is_remote(self.path):
            self.check()
            return os.path.abspath(local_path(self.path))
        import fsspec

        from ..storage import describe_storage_error

        target = os.path.join(cache_dir, "side_inputs", self.name)
        try:
            fs, root = fsspec.core.url_to_fs(self.path, **self.storage_options)
            if not fs.exists(root):
                raise InputError(f"side input {self.name!r}: {self.path!r} does not exist")
            if fs.isdir(root):
                fs.get(root.rstrip("/") + "/", target, recursive=True)
            else:
                os.makedirs(target, exist_ok=True)
                target = os.path.join(target, os.path.basename(root))
                fs.get(root, target)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(describe_storage_error(self.path, exc)) from None
        return target
