"""An auth manager for the link tests: Airflow's simple one, except that one user may not read
one DAG (the simple one's roles grant every DAG alike, so they cannot say that)."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

DENIED_USER = "outsider"
DENIED_DAG = "prt_files"


class OneDagDenied(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None,
                          details: Any = None) -> bool:
        if user.get_name() == DENIED_USER and details is not None and details.id == DENIED_DAG:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity,
                                         details=details)
