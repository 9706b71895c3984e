"""Suite-wide guards, registered by tests/conftest.py (or alone with ``pytest -p suite_guards``).

- **Skips in CI.** With ``CI=true``, a run that skipped a test not listed in tests/known_skips.txt
  (or the file named by ``NWB_CELLTYPE_KNOWN_SKIPS``) fails, naming the skips: a green CI cannot
  hide tests that did not run. Adding a skip means editing that list on purpose.
- **Servers.** A test that listens on an internet socket (directly, in a fixture, or in a thread it
  starts), or uses a fixture that did, must be marked ``network``; an unmarked one fails.
"""

from __future__ import annotations

import fnmatch
import os
import socket
from pathlib import Path

import pytest

KNOWN_SKIPS_ENV = "NWB_CELLTYPE_KNOWN_SKIPS"
KNOWN_SKIPS = Path(__file__).resolve().with_name("known_skips.txt")


def in_ci() -> bool:
    """True when the suite runs in CI (``CI`` set to true/1/yes, as CI services and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def load_known_skips(path: Path) -> list[tuple[str, str]]:
    """``(node id glob, reason substring)`` per line ``GLOB | REASON``; ``#`` starts a comment."""
    known = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        glob, sep, reason = line.partition(" | ")
        if not sep or not glob.strip() or not reason.strip():
            raise ValueError(f"{path}:{n}: expected 'NODE-ID-GLOB | REASON SUBSTRING', got {line!r}")
        known.append((glob.strip(), reason.strip()))
    return known


def unexpected_skips(skipped: list[tuple[str, str]], known: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``(node id, reason)`` skips that match no known ``(glob, reason substring)``."""
    return [
        (nodeid, reason)
        for nodeid, reason in skipped
        if not any(fnmatch.fnmatchcase(nodeid, g) and r in reason for g, r in known)
    ]


class SkipGuard:
    """Collects skips; in CI, fails the session on any skip not in the known list."""

    def __init__(self):
        self.skipped: list[tuple[str, str]] = []
        self.unexpected: list[tuple[str, str]] = []
        self.list_path = Path(os.environ.get(KNOWN_SKIPS_ENV) or KNOWN_SKIPS)

    def pytest_runtest_logreport(self, report):
        if report.skipped and not hasattr(report, "wasxfail"):
            lr = report.longrepr
            reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
            self.skipped.append((report.nodeid, reason))

    def pytest_sessionfinish(self, session):
        if not in_ci() or not self.skipped:
            return
        self.unexpected = unexpected_skips(self.skipped, load_known_skips(self.list_path))
        if self.unexpected:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if self.unexpected:
            tr = terminalreporter
            tr.section("unexpected skips (CI=true)", sep="=", red=True, bold=True)
            for nodeid, reason in self.unexpected:
                tr.line(f"SKIPPED {nodeid}: {reason}", red=True)
            tr.line(
                f"FAILED: {len(self.unexpected)} skip(s) not in {self.list_path}; make them run, or list "
                "them there on purpose ('NODE-ID-GLOB | REASON SUBSTRING').",
                red=True,
                bold=True,
            )


class ServerGuard:
    """Fails a test not marked ``network`` that listens on an AF_INET/AF_INET6 socket, or that uses a
    fixture which did (so that a test sharing a module-scoped server is caught whatever the order)."""

    def __init__(self):
        self.item = None
        self.hits: list[str] = []
        self.fixtures: list[str] = []  # fixtures being set up, innermost last
        self.server_fixtures: set[str] = set()
        guard, listen = self, socket.socket.listen

        def listen_watched(sock, *args):
            if guard.item is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    guard.hits.append(str(sock.getsockname()))
                except OSError:
                    guard.hits.append("?")
                if guard.fixtures:
                    guard.server_fixtures.add(guard.fixtures[-1])
            return listen(sock, *args)

        self._original = listen
        socket.socket.listen = listen_watched

    def pytest_unconfigure(self):
        socket.socket.listen = self._original

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item):
        self.item = item
        try:
            return (yield)
        finally:
            self.item = None

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef):
        self.fixtures.append(fixturedef.argname)
        try:
            return (yield)
        finally:
            self.fixtures.pop()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        hits, self.hits = self.hits, []
        if item.get_closest_marker("network") is not None or report.failed:
            return report
        servers = sorted(self.server_fixtures & set(getattr(item, "fixturenames", ())))
        if hits or (servers and call.when == "call"):
            report.outcome = "failed"
            where = (
                f"listened on {', '.join(sorted(set(hits)))}" if hits else f"uses server fixture(s) {servers}"
            )
            report.longrepr = (
                f"{item.nodeid} {where} (during {call.when}) but is not marked @pytest.mark.network: "
                "mark every test that starts or uses a server."
            )
        return report


def pytest_configure(config):
    for name, plugin in (("skip_guard", SkipGuard), ("server_guard", ServerGuard)):
        if not config.pluginmanager.has_plugin(name):
            config.pluginmanager.register(plugin(), name)
