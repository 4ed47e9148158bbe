"""Hot reload: keep the current `PolicySet` and swap it when the policy files change.

A reload loads and validates the files from scratch; only a policy without problems replaces
the current one (one attribute assignment: readers see the old or the new set, never a mix).
A reload that fails keeps the current policy, records the `PolicyError` in `last_error`, and
logs the problems (file, line, rule id, message: never evaluation data).

Watching uses watchfiles on the directories holding the files (editors often replace a file
by renaming a new one over it, which a watch on the file itself would miss).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import watchfiles

from pgwarden.proxy.policy.engine import PolicySet
from pgwarden.proxy.policy.errors import PolicyError
from pgwarden.proxy.policy.loader import ColumnCatalog, load_policy, policy_files, revision_of

logger = logging.getLogger("pgwarden.policy")


class PolicyWatcher:
    """Holds the current policy; `reload()` on demand, `start()`/`run()` to follow edits."""

    def __init__(self, paths: Sequence[Path | str], *, catalog: ColumnCatalog | None = None,
                 on_change: Callable[[PolicySet], None] | None = None,
                 on_error: Callable[[PolicyError], None] | None = None,
                 debounce_ms: int = 200, poll_ms: int = 1000) -> None:
        """Load the policy now; raises `PolicyError` if the initial policy is invalid."""
        self.paths = tuple(Path(p) for p in paths)
        self.catalog = catalog
        self.on_change = on_change
        self.on_error = on_error
        self.debounce_ms = debounce_ms
        self.poll_ms = poll_ms
        self.last_error: PolicyError | None = None
        self._current: PolicySet = load_policy(self.paths, catalog=catalog)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rejected: str | None = None  # revision of the files of the last rejected reload
        self.reloads = 0   # successful reloads since start (tests and metrics)
        self.failures = 0  # rejected reloads

    @property
    def current(self) -> PolicySet:
        """The policy in force. Read it once per call and use that object for the whole call."""
        return self._current

    def _disk_revision(self) -> str | None:
        try:
            return revision_of([p.read_bytes() for p in policy_files(self.paths)])
        except OSError:
            return None

    def reload(self, *, force: bool = False) -> bool:
        """Load the files again; swap in the result if valid. True when the policy changed.

        Files whose content did not change since the last load (or the last rejected load)
        are not compiled again unless `force`.
        """
        with self._reload_lock:
            on_disk = self._disk_revision()
            if not force and on_disk is not None and on_disk in (self._current.revision, self._rejected):
                return False
            try:
                policy = load_policy(self.paths, catalog=self.catalog)
            except PolicyError as error:
                self.last_error = error
                self._rejected = on_disk
                self.failures += 1
                logger.warning("policy reload rejected; keeping revision %s:\n%s",
                               self._current.revision[:12], error)
                if self.on_error is not None:
                    self.on_error(error)
                return False
            self.last_error = None
            self._rejected = None
            if policy.revision == self._current.revision:
                return False
            old = self._current.revision
            self._current = policy
            self.reloads += 1
        logger.info("policy reloaded: revision %s -> %s (%d rules)", old[:12], policy.revision[:12],
                    len(policy.rules))
        if self.on_change is not None:
            self.on_change(policy)
        return True

    # ---- watching ----------------------------------------------------------------------------

    def _watch_dirs(self) -> list[Path]:
        dirs = {p if p.is_dir() else p.parent for p in self.paths}
        return sorted(d.resolve() for d in dirs if d.exists())

    def _relevant(self, change: watchfiles.Change, path: str) -> bool:
        candidate = Path(path).resolve()
        watched = {p.resolve() for p in policy_files(self.paths)}
        if candidate in watched:
            return True
        # a new file in a watched directory, or a file of ours that was replaced/removed
        dirs = {p.resolve() for p in self.paths if p.is_dir()}
        return candidate.parent in dirs and candidate.suffix in (".yaml", ".yml") \
            and not candidate.stem.endswith("_test")

    def start(self) -> None:
        """Follow edits on a background thread until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_thread, name="pgwarden-policy-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run_thread(self) -> None:
        # yield_on_timeout: also look at the files every `poll_ms` (a cheap hash when nothing
        # changed), which covers edits made before the OS watch was in place.
        for _changes in watchfiles.watch(*self._watch_dirs(), watch_filter=self._relevant,
                                         stop_event=self._stop, debounce=self.debounce_ms,
                                         raise_interrupt=False, yield_on_timeout=True,
                                         rust_timeout=self.poll_ms):
            self.reload()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow edits in the running event loop until `stop` is set (or the task is cancelled).

        Loading runs in a worker thread so the loop keeps serving calls meanwhile.
        """
        async for _changes in watchfiles.awatch(*self._watch_dirs(), watch_filter=self._relevant,
                                                stop_event=stop, debounce=self.debounce_ms,
                                                yield_on_timeout=True, rust_timeout=self.poll_ms):
            await asyncio.to_thread(self.reload)
