"""SIGKILL at random moments under load: no acknowledged span lost or duplicated.

The short version of scripts/crash-test.sh (see crash_harness.py for what is checked)."""

import os

from crash_harness import run


def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path):
    summary = run(os.environ["SIGHTLINE_BIN"], tmp_path, cycles=4, clients=4, seed=1)
    assert summary["acked_spans"] > 0, summary
    assert summary["cycles"] == 4
