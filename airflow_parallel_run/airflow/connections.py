"""Storage credentials from Airflow connections: ``conn_id=`` on datasets and side inputs.

A connection's extras become the fsspec ``storage_options`` of the object that names it, at
run time, inside the task that reads the data. The options are never logged and never enter a
descriptor or an XCom (``to_dict()`` of datasets leaves them out); their secret values are
handed to the engine, which masks them in every log the job writes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from ..errors import ConfigError


class _Credentialed(Protocol):
    """A dataset or a side input: it may name a connection, and takes fsspec options."""

    conn_id: str | None
    storage_options: dict[str, Any]


T = TypeVar("T", bound=_Credentialed)

# Option names whose values are masked in logs (as Airflow's own masker decides by name).
SENSITIVE_NAMES = ("secret", "password", "passwd", "token", "key", "credential", "private",
                   "auth", "sas", "signature", "connection_string")


# Extras spelled as fsspec options (``key``/``secret``/``client_kwargs`` for s3fs) are taken
# as they are; any other connection goes through Airflow's own filesystem for its scheme.
FSSPEC_SPELLING = {"key", "secret", "token", "client_kwargs", "config_kwargs", "anon",
                   "s3_additional_kwargs", "profile"}


def split_conn(url: str) -> tuple[str, str | None]:
    """ObjectStoragePath's spelling ``s3://conn_id@bucket/key`` as ("s3://bucket/key", conn_id)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if not sep or scheme in ("http", "https", "file", "local") or "@" not in netloc:
        return url, None
    conn_id, _, host = netloc.rpartition("@")
    return f"{scheme}://{host}{slash}{tail}", conn_id or None


def scheme_of(url: str) -> str:
    return url.partition("://")[0] if "://" in url else "file"


def storage_options(conn_id: str, scheme: str = "s3") -> dict[str, Any]:
    """The fsspec options that reach ``scheme`` storage with the connection's credentials.

    ``{"storage_options": {...}}`` or extras in fsspec's spelling are taken as given; any other
    connection (a standard ``aws`` one: login/password, ``endpoint_url``, ``region_name``)
    goes through ``airflow.sdk.io.fs.get_fs``, as ObjectStoragePath does, and the filesystem
    it builds is turned into plain options that worker processes can use.
    """
    from airflow.sdk import Connection

    extras = Connection.get(conn_id).extra_dejson or {}
    nested = extras.get("storage_options")
    if isinstance(nested, dict):
        return dict(nested)
    if FSSPEC_SPELLING & set(extras):
        return dict(extras)
    return _options_from_airflow(conn_id, scheme)


def _options_from_airflow(conn_id: str, scheme: str) -> dict[str, Any]:
    from airflow.sdk.io.fs import get_fs

    fs = get_fs(scheme, conn_id)
    if getattr(fs, "session", None) is not None and scheme in ("s3", "s3a", "s3n"):
        return _s3_options(fs)
    options = dict(getattr(fs, "storage_options", None) or {})
    odd = sorted(k for k, v in options.items() if not isinstance(v, str | int | float | bool |
                                                                  dict | list | type(None)))
    if odd:
        raise ConfigError(f"connection {conn_id!r}: its {scheme} filesystem holds {odd}, which "
                          "worker processes cannot receive; put fsspec options in the "
                          "connection's extras under \"storage_options\"")
    return options


def _s3_options(fs: Any) -> dict[str, Any]:
    """The credentials, endpoint and region of the Amazon provider's S3 filesystem."""
    import asyncio

    async def frozen() -> Any:
        credentials = await fs.session.get_credentials()
        return None if credentials is None else await credentials.get_frozen_credentials()

    creds = asyncio.run(frozen())
    options: dict[str, Any] = {"anon": True} if creds is None else {
        "key": creds.access_key, "secret": creds.secret_key}
    if creds is not None and creds.token:
        options["token"] = creds.token
    client: dict[str, Any] = {}
    if fs.endpoint_url:
        client["endpoint_url"] = fs.endpoint_url
    region = fs.session.get_config_variable("region")
    if region:
        client["region_name"] = region
    if client:
        options["client_kwargs"] = client
    if getattr(fs, "config_kwargs", None):
        options["config_kwargs"] = dict(fs.config_kwargs)
    return options


def with_credentials(source: T) -> T:
    """A copy of a dataset or side input with its connection's options filled in.

    The connection is ``conn_id=``, or the one its paths name (``s3://conn_id@bucket/...``,
    as an ObjectStoragePath writes them). Options given in the DAG (``storage_options=``) win
    over the connection's.
    """
    src: Any = source  # a FileDataset or TabularDataset (paths), or a SideInput (path)
    many = hasattr(src, "paths")
    paths: list[str] = list(src.paths) if many else [src.path]
    split = [split_conn(p) for p in paths]
    named = {c for _, c in split if c} | ({source.conn_id} if source.conn_id else set())
    if len(named) > 1:
        raise ConfigError(f"{getattr(source, 'name', paths[0])!r}: its paths and conn_id name "
                          f"different connections ({', '.join(sorted(named))}): one reads "
                          "through one connection")
    if not named:
        return source
    filled: Any = copy.copy(source)
    if many:
        filled.paths = [url for url, _ in split]
    else:
        filled.path = split[0][0]
    options = storage_options(named.pop(), scheme_of(split[0][0]))
    filled.storage_options = {**options, **(source.storage_options or {})}
    return filled


def connections_by_url(sources: Iterable[Any]) -> dict[str, str]:
    """The connection each URL of these datasets and side inputs is read through."""
    found = {}
    for source in sources:
        for path in getattr(source, "paths", None) or [source.path]:
            url, conn_id = split_conn(str(path))
            if "://" in url and (conn_id or source.conn_id):
                found[url.rstrip("/")] = conn_id or source.conn_id
    return found


_QUOTED_URL = re.compile(r"'([A-Za-z][A-Za-z0-9+.-]*://[^']*)'")


def naming_connections(message: str, connections: dict[str, str]) -> str:
    """``message`` with each URL in it followed by the connection it is reached through.

    The engine names the plain URL (``'s3://bucket/key'``) of a store that refused a request;
    the user wrote ``s3://conn_id@bucket/key`` or ``conn_id=``, and fixes the connection.
    ``connections``: {URL: connection id}, a URL standing for everything under it too.
    """
    roots = sorted(connections, key=len, reverse=True)  # the most precise first

    def named(found: re.Match[str]) -> str:
        url = found.group(1).rstrip("/")
        for root in roots:
            if url == root or url.startswith(f"{root}/"):
                return f"{found.group(0)} (connection {connections[root]!r})"
        return found.group(0)

    return _QUOTED_URL.sub(named, message)


def secret_values(options: Any, name: str = "") -> list[str]:
    """The string values of ``options`` (nested) whose option name looks sensitive."""
    if isinstance(options, dict):
        return [v for key, value in options.items() for v in secret_values(value, str(key))]
    if isinstance(options, list | tuple):
        return [v for value in options for v in secret_values(value, name)]
    if isinstance(options, str) and any(word in name.lower() for word in SENSITIVE_NAMES):
        return [options]
    return []
