"""Shared fixtures. Real parts only: an embedded redis-server on a temporary socket, the sandbox
as a real subprocess over real HTTP, and real ``ferry worker`` processes."""

pytest_plugins = [
    "tests.fixtures.redis", "tests.fixtures.sandbox", "tests.fixtures.broker", "tests.fixtures.worker",
    "tests.fixtures.archive",
]
