"""Issue 24 on the review server: metrics behind a token, admins, sign-in lock-out, exports, renditions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from skinscreen.db import accounts
from skinscreen.db.session import make_engine, make_session_factory
from skinscreen.db.tables import Account, Role
from tests.review.conftest import seed_database


def test_metrics_without_a_configured_token_answer_401_to_everyone(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer None"}).status_code == 401


@pytest.mark.integration
def test_two_admins_deactivating_each_other_at_once_leave_one_active_admin(pg_url: str, tmp_path: Path) -> None:
    seeded = seed_database(pg_url, tmp_path)
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    first, second = sessions(), sessions()
    with sessions() as setup:
        other = accounts.add_account(setup, name="root2", role=Role.admin, password_hash="x")
        setup.commit()
        root2, root = other.id, seeded.accounts["root"]
    seen: list[int] = []
    try:
        # root deactivates root2 (not yet committed) while root2 deactivates root.
        assert accounts.other_active_admins(first, root2) == 1
        first.execute(update(Account).where(Account.id == root2).values(active=False))
        worker = threading.Thread(target=lambda: seen.append(accounts.other_active_admins(second, root)))
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), "the second admin's check must wait for the first change"
        first.commit()
        worker.join(10)
        assert seen == [0]  # root2 is no longer an admin: root is the last one, and stays
    finally:
        first.close()
        second.close()
        engine.dispose()

