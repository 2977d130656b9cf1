"""Every HTTP route Ferry serves, as module-level routers over ``app.state``:

- ``app``: the API (``POST /jobs``, ``GET /jobs``…), and ``create_app``, which assembles the rest;
- ``actions``: replay and purge (``POST /jobs/{id}/replay``, ``POST /jobs:purge``…);
- ``dashboard``: the HTML pages at ``/`` and the fragments they poll;
- ``auth`` and ``deps``: bearer tokens, browser sessions, and what an endpoint depends on.
"""
