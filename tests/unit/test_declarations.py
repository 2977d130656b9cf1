"""The flow declarations are the single source: every declared step has an implementation, and
producers never import the worker or its HTTP stack."""

from __future__ import annotations

import subprocess
import sys

from producers.kinds import KINDS, all_step_names
from worker.steps import STEPS


def test_every_declared_step_is_implemented_and_nothing_else_is():
    assert all_step_names() == set(STEPS)


def test_every_kind_has_steps_and_a_params_model():
    for kind in KINDS.values():
        assert kind.steps, kind.name
        assert kind.params.model_fields is not None


def test_importing_producers_pulls_in_neither_worker_nor_requests():
    code = ("import sys, producers, producers.cli, producers.client, producers.replay, producers.cli.batch, "
            "producers.selection, producers.cli.reads, producers.cli.replay; "
            "bad = [m for m in ('worker', 'requests', 'requests_toolbelt') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
