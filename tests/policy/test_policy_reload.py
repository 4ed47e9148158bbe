"""Hot reload with real files and the real watcher: a valid edit is picked up, an invalid one
keeps the previous policy and says why."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from policy_support import analysis, query

from pgwarden.proxy.policy import PolicyError
from pgwarden.proxy.policy.watcher import PolicyWatcher

ALLOW = """version: 1
rules:
  - id: readers
    effect: allow
    when: '"reader" in principal.roles'
    tables: [{table}]
"""
READER = {"roles": ["reader"]}


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def allows(watcher: PolicyWatcher, table: str) -> bool:
    return watcher.current.decide(READER, query(), analysis(table)).allowed


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)   # as editors do: a new file renamed over the old one


def test_initial_policy_must_be_valid(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules: [")
    with pytest.raises(PolicyError):
        PolicyWatcher([path])


def test_thread_watcher_swaps_on_valid_edit_and_keeps_on_invalid(tmp_path, caplog):
    path = tmp_path / "p.yaml"
    path.write_text(ALLOW.format(table="public.orders"))
    errors: list[PolicyError] = []
    watcher = PolicyWatcher([path], on_error=errors.append, debounce_ms=50)
    watcher.start()
    try:
        first = watcher.current.revision
        assert allows(watcher, "public.orders") and not allows(watcher, "public.products")

        write(path, ALLOW.format(table="public.products"))
        assert wait_for(lambda: watcher.current.revision != first)
        assert allows(watcher, "public.products") and not allows(watcher, "public.orders")
        second = watcher.current.revision

        with caplog.at_level("WARNING", logger="pgwarden.policy"):
            broken = "  - id: bad\n    effect: allow\n    when: 'x =='\n"
            write(path, ALLOW.format(table="public.products") + broken)
            assert wait_for(lambda: watcher.failures >= 1)
        assert watcher.current.revision == second          # the previous policy stays
        assert allows(watcher, "public.products")
        assert watcher.last_error is not None and errors
        assert "rule 'bad'" in str(watcher.last_error) and "CEL syntax error" in str(watcher.last_error)
        assert "p.yaml:9" in caplog.text and "keeping revision" in caplog.text

        write(path, ALLOW.format(table="public.customers"))  # fixed: picked up again
        assert wait_for(lambda: allows(watcher, "public.customers"))
        assert watcher.last_error is None
    finally:
        watcher.stop()


def test_new_file_in_a_watched_directory(tmp_path):
    (tmp_path / "a.yaml").write_text(ALLOW.format(table="public.orders"))
    watcher = PolicyWatcher([tmp_path], debounce_ms=50)
    watcher.start()
    try:
        extra = ALLOW.format(table="public.products").replace("id: readers", "id: more-readers")
        (tmp_path / "b.yaml").write_text(extra)
        assert wait_for(lambda: allows(watcher, "public.products"))
        assert len(watcher.current.rules) == 2
        # a test file beside the policies is not part of the policy
        (tmp_path / "b_test.yaml").write_text("not: a policy")
        time.sleep(0.3)
        assert watcher.last_error is None
    finally:
        watcher.stop()


def test_async_watcher(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(ALLOW.format(table="public.orders"))
    watcher = PolicyWatcher([path], debounce_ms=50)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))
        await asyncio.sleep(0.2)
        write(path, ALLOW.format(table="public.products"))
        for _ in range(500):
            if allows(watcher, "public.products"):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert allows(watcher, "public.products")
    assert watcher.reloads == 1


def test_manual_reload_of_an_unchanged_policy(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(ALLOW.format(table="public.orders"))
    watcher = PolicyWatcher([path])
    assert watcher.reload() is False and watcher.reloads == 0
