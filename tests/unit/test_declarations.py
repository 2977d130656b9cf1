"""The flow declarations are the single source: every declared step has an implementation, and
every kind declares its steps and a parameter model. (That producers never import the worker is
tests/unit/test_layout.py, read from the source, and tests/e2e/test_producer_only_env.py, run.)"""

from __future__ import annotations

from producers.kinds import KINDS, all_step_names
from producers.params import Params
from worker.steps import STEPS


def test_every_declared_step_is_implemented_and_nothing_else_is():
    assert all_step_names() == set(STEPS)


def test_every_kind_has_distinct_steps_and_a_params_model():
    for kind in KINDS.values():
        assert kind.step_names and len(set(kind.step_names)) == len(kind.step_names), kind.name
        assert issubclass(kind.params, Params), kind.name
