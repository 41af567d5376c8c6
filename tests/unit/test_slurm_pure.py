"""The pure half of the Slurm scheduler: the sbatch script (golden files), array syntax,
time limits, squeue parsing, and how Slurm's outcomes map to failure kinds.

Regenerate the golden scripts with `UPDATE_GOLDEN=1 pytest tests/unit/test_slurm_pure.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from containerexec.model.spec import ModuleSpec
from containerexec.run.runner import Failure
from containerexec.run.sbatch import (
    SlurmSettings,
    array_indices,
    parse_states,
    render_script,
    time_limit,
)
from containerexec.run.slurm import ENDED_BY_SLURM, LOST

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def spec(**extra: object) -> ModuleSpec:
    return ModuleSpec.model_validate(
        {
            "name": "wc",
            "environment": {"image": "reg.example/wc@sha256:" + "a" * 64},
            "command": ["wc", "-l"],
            "array": {"range": 8, "max_parallel": 3},
            **extra,
        }
    )


def golden_text(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), (
        f"{path} differs; if the change is intended, rerun with UPDATE_GOLDEN=1 and review it"
    )


def test_the_plain_array_script_matches_its_golden_file() -> None:
    script = render_script(
        run_id="wc-1",
        module="wc",
        run_dir=Path("/shared/runs/wc-1"),
        indices=[0, 1, 2, 3, 5, 7],
        throttle=3,
        spec=spec(),
        settings=SlurmSettings(python="/opt/venv/bin/python"),
    )
    golden_text("sbatch_array.sh", script)


def test_a_packed_array_script_runs_one_batch_per_task() -> None:
    script = render_script(
        run_id="wc-3",
        module="wc",
        run_dir=Path("/shared/runs/wc-3"),
        indices=[0, 1, 2],
        throttle=2,
        spec=spec(resources={"timeout": 60}),
        settings=SlurmSettings(python="/opt/venv/bin/python"),
        batches=Path("/shared/runs/wc-3/slurm/batches-0.json"),
        batch_size=4,
    )
    golden_text("sbatch_packed.sh", script)
    assert "#SBATCH --time=6" in script  # 4 values x 60 s + the 120 s margin -> 6 min


def test_resources_and_settings_become_sbatch_options() -> None:
    script = render_script(
        run_id="wc-2",
        module="wc",
        run_dir=Path("/shared/runs/wc-2"),
        indices=[4],
        throttle=1,
        spec=spec(
            resources={"cpus": 1.5, "memory": "300m", "timeout": "10m"},
            retries={"max_attempts": 2, "backoff": {"initial": 30}},
        ),
        settings=SlurmSettings(
            partition="gpu",
            account="lab",
            options=("--qos=long",),
            python="/opt/venv/bin/python",
        ),
    )
    golden_text("sbatch_resources.sh", script)


@pytest.mark.parametrize(
    ("indices", "expected"),
    [([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([3], "3"), ([2, 1, 1, 0], "0-2"), ([0, 2, 4], "0,2,4")],
)
def test_array_indices_are_compressed_into_ranges(indices: list[int], expected: str) -> None:
    assert array_indices(indices) == expected


def test_the_time_limit_covers_every_attempt_its_backoff_and_a_margin() -> None:
    assert time_limit(spec()) is None  # no timeout: the partition's default
    one = spec(resources={"timeout": "10m"})
    assert time_limit(one) == "12"  # 600 s + 120 s margin
    three = spec(resources={"timeout": 60}, retries={"max_attempts": 3})
    assert time_limit(three) == "6"  # 3 x 60 s + backoffs 1 s + 2 s + 120 s -> 303 s
    # A packed task runs its values one after another: each value's attempts count.
    assert time_limit(three, values=10) == "33"  # 10 x 183 s + 120 s -> 1950 s


def test_squeue_lines_parse_to_states_by_index() -> None:
    out = "0|COMPLETED|None\n1|RUNNING|None\n5|PENDING|JobArrayTaskLimit\n[junk]\n"
    assert parse_states(out) == {
        0: ("COMPLETED", "None"),
        1: ("RUNNING", "None"),
        5: ("PENDING", "JobArrayTaskLimit"),
    }


def test_slurm_outcomes_map_to_failure_kinds_and_lost_ones_are_not_the_shards_fault() -> None:
    assert LOST == {
        "NODE_FAIL": Failure.NODE_LOST,
        "BOOT_FAIL": Failure.NODE_LOST,
        "PREEMPTED": Failure.PREEMPTED,
    }
    assert ENDED_BY_SLURM["TIMEOUT"] == Failure.TIME_LIMIT
    assert ENDED_BY_SLURM["OUT_OF_MEMORY"] == Failure.OOM
    assert ENDED_BY_SLURM["CANCELLED"] == Failure.CANCELLED
