"""FileDataset: every matching file is one input item.

Listing is streamed: a folder is walked one directory at a time, in sorted name order, so
planning a million files never holds more than one directory's names at once.
"""

from __future__ import annotations

import bisect
import functools
import glob
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import InputError

_MAGIC = ("*", "?", "[")


class InputItem(NamedTuple):
    """One file of an input: its path or URL, and what tells a changed file apart."""

    path: str
    size: int
    mtime: float | str  # a modification time, or a store's etag


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _has_magic(path: str) -> bool:
    return any(ch in path for ch in _MAGIC)


LIST_CHUNK = 10_000  # files per chunk of a listing

Note = Callable[[str], None]


def _ignore(text: str) -> None:
    pass


class _Walk:
    """How one local input is listed: links are followed, but never into a folder that is
    already on the way down (a loop), nor, with ``inside``, anywhere outside the input's own
    folder; what is not a regular file (a FIFO, a socket, a device, a broken link) is skipped,
    as opening it could block for ever. Each skip is told to ``note`` with its reason."""

    def __init__(self, root: str, stats: bool, inside: bool, note: Note) -> None:
        self.stats = stats
        self.note = note
        self.root = os.path.realpath(root) if inside else None
        self.ancestors: set[tuple[int, int]] = set()

    def skip(self, path: str, why: str) -> None:
        self.note(f"input {path!r} skipped: {why}")

    def outside(self, path: str) -> bool:
        if self.root is None:
            return False
        real = os.path.realpath(path)
        return real != self.root and not real.startswith(os.path.join(self.root, ""))

    def sort_entry(self, entry: os.DirEntry, files: list[str], dirs: list[str]) -> None:
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError as exc:  # a link to itself (ELOOP), a folder we may not read
            self.skip(entry.path, exc.strerror or str(exc))
            return
        if (is_dir or is_file) and entry.is_symlink() and self.outside(entry.path):
            self.skip(entry.path, "a link to outside the input (links are followed only "
                                  "inside it)")
        elif is_dir:
            dirs.append(entry.name)
        elif is_file:
            files.append(entry.name)
        elif entry.is_symlink():
            self.skip(entry.path, "a link to nothing")
        else:
            self.skip(entry.path, "not a regular file (a FIFO, socket or device is never read)")

    def walk(self, folder: str) -> Iterator[list[Any]]:
        """The files under ``folder`` in sorted path order, in chunks of at most LIST_CHUNK
        (a chunk per item would cost more than the listing itself). A folder's names are held
        to sort them; their paths (and sizes) only a chunk at a time."""
        try:
            st = os.stat(folder)
        except OSError as exc:
            raise InputError(f"input {folder!r}: cannot be listed ({exc.strerror or exc})") from None
        key = (st.st_dev, st.st_ino)
        if key in self.ancestors:
            self.skip(folder, "a link to a folder above it (a loop: never followed)")
            return
        self.ancestors.add(key)
        try:
            yield from self._walk_in(folder)
        finally:
            self.ancestors.discard(key)

    def _walk_in(self, folder: str) -> Iterator[list[Any]]:
        files: list[str] = []
        dirs: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    self.sort_entry(entry, files, dirs)
        except OSError as exc:
            raise InputError(f"input {folder!r}: cannot be listed ({exc.strerror or exc})") from None
        files.sort()
        dirs.sort()
        prefix = os.path.join(folder, "")
        start = 0
        for sub in [*dirs, None]:  # interleave files and sub-folders as their sorted names come
            # "d.csv" < "d/x": a folder sorts as its name and a slash, as full paths do
            end = len(files) if sub is None else bisect.bisect_left(files, sub + "/", start)
            for first in range(start, end, LIST_CHUNK):
                yield _items(prefix, files[first:min(first + LIST_CHUNK, end)], self.stats)
            start = end
            if sub is not None:
                yield from self.walk(prefix + sub)


def _items(prefix: str, names: list[str], stats: bool) -> list[Any]:
    """InputItems; with ``stats=False`` only the paths (the planner's fast path)."""
    if not stats:
        return [prefix + name for name in names]
    items = []
    folder_fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            try:
                size, mtime = _size_and_time(name, folder_fd)
            except FileNotFoundError:  # removed while we listed: not an input any more
                continue
            items.append(InputItem(prefix + name, size, mtime))
    finally:
        os.close(folder_fd)
    return items


def _size_and_time(path: str, dir_fd: int | None = None) -> tuple[int, float]:
    """The file's size and modification time; for a symbolic link, the later of its target's
    time and its own: a link pointed at another file (even an older one) is a changed input."""
    st = os.lstat(path, dir_fd=dir_fd)
    if not stat.S_ISLNK(st.st_mode):
        return st.st_size, st.st_mtime
    target = os.stat(path, dir_fd=dir_fd)
    return target.st_size, max(target.st_mtime, st.st_mtime)


def _one(spec: str, path: str, stats: bool = True) -> list[Any]:
    """A single named file; anything but a regular file is refused (opening a FIFO blocks)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"input {spec!r}: {path!r} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"input {spec!r}: {path!r} is not a regular file or folder "
                         "(a FIFO, socket or device is never read)")
    if not stats:
        return [path]
    return [InputItem(path, *_size_and_time(path))]


def _list_local(spec: str, stats: bool = True, inside: bool = False,
                note: Note = _ignore) -> Iterator[list[Any]]:
    path = spec[len("file://"):] if spec.startswith("file://") else spec
    path = os.path.abspath(os.path.expanduser(path))
    if _has_magic(path):
        matches = sorted(glob.glob(path, recursive=True))
        if not matches:
            raise InputError(f"input {spec!r}: the pattern matches no file")
        for match in matches:
            if os.path.isdir(match):
                yield from _Walk(match, stats, inside, note).walk(match)
            else:
                yield _one(spec, match, stats)
    elif os.path.isdir(path):
        yield from _Walk(path, stats, inside, note).walk(path)
    elif os.path.lexists(path):
        yield _one(spec, path, stats)
    else:
        raise InputError(f"input {spec!r}: no such file or folder")


def _remote_matches(fs: Any, spec: str, root: str) -> dict[str, dict]:
    """Every file (with fsspec's info) that a remote path, folder or glob names."""
    if _has_magic(root):
        infos = fs.glob(root, detail=True)
        if not infos:
            raise InputError(f"input {spec!r}: the pattern matches no file")
        found: dict[str, dict] = {}
        for name, info in infos.items():
            if info.get("type") == "directory":
                found.update(fs.find(name, detail=True))
            else:
                found[name] = info
        return found
    if fs.isdir(root):
        return fs.find(root, detail=True)
    if fs.isfile(root):
        return {root: fs.info(root)}
    raise InputError(f"input {spec!r}: no such file or folder")


def _remote_item(fs: Any, name: str, info: dict) -> InputItem:
    mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if not isinstance(mtime, int | float):
        mtime = getattr(mtime, "timestamp", lambda: 0)()
    tag = info.get("ETag") or info.get("etag")
    size = int(info.get("size") or 0)
    return InputItem(fs.unstrip_protocol(name), size, str(tag) if tag else float(mtime))


def _list_remote(spec: str, storage_options: dict[str, Any]) -> Iterator[InputItem]:
    import fsspec

    from ..storage import describe_storage_error

    try:
        fs, root = fsspec.core.url_to_fs(spec, **storage_options)
        found = _remote_matches(fs, spec, root)
    except InputError:
        raise
    except Exception as exc:  # the store refused: name the URL, not the client's internals
        raise InputError(describe_storage_error(spec, exc)) from None
    for name in sorted(found):
        if found[name].get("type") != "directory":
            yield _remote_item(fs, name, found[name])


def is_one_path(path: Any) -> bool:
    """A str, an os.PathLike, or an object-storage path such as Airflow's ObjectStoragePath."""
    return isinstance(path, str | os.PathLike) or (
        hasattr(path, "protocol") and hasattr(path, "conn_id"))


def path_text(path: Any) -> Any:
    """The path as text; an ObjectStoragePath keeps its connection: ``s3://conn@bucket/key``
    (the Airflow layer turns that connection into credentials)."""
    if isinstance(path, os.PathLike):
        return os.fspath(path)
    return str(path) if is_one_path(path) else path


@dataclass
class FileDataset:
    """Files as input items. Build it with :meth:`from_files`."""

    paths: list[str]
    name: str = "input"
    storage_options: dict[str, Any] = field(default_factory=dict)
    conn_id: str | None = None
    # False: a link that leads outside the input's folder is skipped, not followed
    follow_links_outside: bool = True

    kind = "files"

    @classmethod
    def from_files(
        cls,
        path: str | os.PathLike | list[str | os.PathLike],
        *,
        name: str | None = None,
        storage_options: dict[str, Any] | None = None,
        conn_id: str | None = None,
        follow_links_outside: bool = True,
    ) -> FileDataset:
        """Files from a path, folder, glob or list of them (fsspec URLs welcome).

        A folder or glob is taken in sorted path order, a list in its own order. Links in a
        folder are followed, but never round a loop; ``follow_links_outside=False`` skips
        those leading outside the folder. What is not a regular file (a FIFO...) is skipped.
        """
        specs: list[Any] = [path] if is_one_path(path) else list(path)  # type: ignore[arg-type]
        if not specs:
            raise InputError("FileDataset.from_files: give at least one path")
        paths = [path_text(p) for p in specs]
        for p in paths:
            if not isinstance(p, str) or not p:
                raise InputError(f"FileDataset.from_files: {p!r} is not a path")
        return cls(paths=paths, name=name or "input", storage_options=dict(storage_options or {}),
                   conn_id=conn_id, follow_links_outside=bool(follow_links_outside))

    @functools.cached_property
    def remote(self) -> bool:
        return any(is_remote(p) for p in self.paths)

    def iter_items(self, stats: bool = True, note: Note = _ignore) -> Iterator[InputItem]:
        """Every file, in input order, streamed; ``note`` hears of each path skipped, and why.

        ``stats=False`` skips each local file's stat (size -1, time 0): listing a folder of
        small files is then several times faster. Remote listings carry sizes and etags anyway.
        """
        for chunk in self.iter_chunks(stats, note):
            if stats:
                yield from chunk
            else:
                yield from (item if isinstance(item, InputItem) else InputItem(item, -1, 0.0)
                            for item in chunk)

    def iter_chunks(self, stats: bool = True, note: Note = _ignore) -> Iterator[list[Any]]:
        """The same files as :meth:`iter_items`, a list at a time (cheaper per file).

        With ``stats=False`` a local file is just its path (a str); remote ones stay
        InputItems, as their listing has sizes and etags anyway.
        """
        for spec in self.paths:
            if is_remote(spec):
                yield list(_list_remote(spec, self.storage_options))
            else:
                yield from _list_local(spec, stats, not self.follow_links_outside, note)

    def to_dict(self) -> dict[str, Any]:
        # storage_options may hold secrets: they are not part of a descriptor.
        data: dict[str, Any] = {"kind": self.kind, "paths": list(self.paths), "name": self.name,
                "conn_id": self.conn_id}
        if not self.follow_links_outside:  # only when set: earlier plans keep their fingerprint
            data["follow_links_outside"] = False
        return data
