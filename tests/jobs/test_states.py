"""The job state machine allows exactly the documented moves."""

from __future__ import annotations

import pytest

from tunery.jobs.states import TERMINAL, TRANSITIONS, IllegalTransition, move, sources_of
from tunery.store import JobRecord, open_store


def test_terminal_states_lead_nowhere_and_everything_else_can_be_cancelled():
    assert all(not TRANSITIONS[s] for s in TERMINAL)
    assert sources_of("cancelled") == set(TRANSITIONS) - TERMINAL
    assert sources_of("pausing") == {"running"}
    assert sources_of("paused") == {"pausing"}


def test_move_refuses_an_illegal_transition_and_skips_a_stale_one(tmp_path):
    store = open_store(tmp_path / "t.db")
    with store.transaction() as tx:
        tx.add_job(
            JobRecord(
                id="ftjob-1",
                org="a",
                model="m",
                training_file="f",
                status="succeeded",
                created_at=1,
                seed=0,
                method={},
                hyperparameters={},
            )
        )
        with pytest.raises(IllegalTransition):
            move(tx, "ftjob-1", ["succeeded"], "running")
        assert not move(tx, "ftjob-1", ["running"], "cancelled")  # the job already finished
    assert store.get_job("ftjob-1").status == "succeeded"
