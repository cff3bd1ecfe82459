"""Files between a remote store and a node's local disk.

Workers read and write local disk only. A mini-batch's remote input files are copied into
the node's cache before it is sent and removed once it is over; for a remote output, the
record a worker wrote to the local staging folder is put as the remote record object.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from typing import Any

from ..plan import MiniBatch
from ..results import write_remote_record
from ..storage import LocalLocation, OutputLocation, Retrying
from .work_queue import Task


class Staging:
    """Copies of remote input files in the node's cache, and records put to a remote output."""

    def __init__(self, cache_dir: str, datasets: dict[str, Any], work: LocalLocation,
                 location: OutputLocation, note: Callable[[str], None]) -> None:
        """``work`` is where the workers write; ``location`` the job's output; ``note``
        tells master_role.txt of an outage of the inputs' store, once it is over."""
        self.cache_dir = cache_dir
        self.datasets = datasets
        self.work = work
        self.location = location
        self.retrying = Retrying("the input store")  # waits for inputs that do not answer
        self.note = note

    def local_items(self, task: Task) -> list[str]:
        """Remote files are fetched to this node's cache; local paths are used as they are."""
        if task.batch.piece is not None:
            return []  # a table piece: the worker reads its rows itself
        if task.local_items is None:
            dataset = self.datasets.get(task.batch.dataset)
            if dataset is None or not dataset.remote:
                task.local_items = task.batch.items  # listed as plain local paths
            else:
                task.local_items = self._fetch(task.batch, dataset)
                task.fetched = True
                for note in self.retrying.take_notes():
                    self.note(note)
        return task.local_items

    def release(self, task: Task) -> None:
        if task.fetched:
            shutil.rmtree(self._folder(task.batch), ignore_errors=True)

    def upload_record(self, index: int, written: tuple[str, int, int] | None) -> None:
        """A record the worker wrote to its staging log, put as the remote record object."""
        assert written is not None
        rel, offset, length = written
        with open(self.work.path(rel), "rb") as handle:
            handle.seek(offset)
            entry = handle.read(length)
        write_remote_record(self.location, index, entry)

    def _folder(self, batch: MiniBatch) -> str:
        return os.path.join(self.cache_dir, f"mb{batch.index}")

    def _fetch(self, batch: MiniBatch, dataset: Any) -> list[str]:
        """The mini-batch's files in one request per file, sent together.

        ``get`` of lists of sources and targets is one batch of GETs sent concurrently on
        an asynchronous store (S3, GCS, Azure); given one path at a time it would first ask
        whether each path is a folder, and wait for each file before the next.
        """
        import fsspec

        folder = self._folder(batch)
        local: list[str] = []
        by_store: dict[int, tuple[Any, list[str], list[str]]] = {}
        for position, url in enumerate(batch.items):
            target = os.path.join(folder, str(position), os.path.basename(url.rstrip("/")))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fs, path = fsspec.core.url_to_fs(url, **dataset.storage_options)
            sources, targets = by_store.setdefault(id(fs), (fs, [], []))[1:]
            sources.append(path)
            targets.append(target)
            local.append(target)
        for fs, sources, targets in by_store.values():
            self.retrying.call(functools.partial(fs.get, sources, targets), batch.items[0])
        return local
