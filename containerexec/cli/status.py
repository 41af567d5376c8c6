"""The exit status of each command that runs something: the only place these rules live.

a one-shard module      the command's own exit status
an array                0 when every selected shard succeeded, else 1
a pipeline              0 when every job succeeded, else 1
cancelled               128 + the signal (130 for Ctrl-C, 143 for SIGTERM)
a run past its deadline 124 (as timeout(1) exits); a pipeline whose job ran out of time: 1
"""

from __future__ import annotations

import signal

from containerexec.pipelines.record import PipelineRecord
from containerexec.run.run import DEADLINE_EXCEEDED
from containerexec.store.records import RunRecord

DEADLINE_STATUS = 124  # what timeout(1) exits with, so scripts can tell it from a failure


def run_status(record: RunRecord) -> int:
    """What `containerexec run` exits with for this (finished) run."""
    if record.state == "cancelled":
        return 128 + (record.signal or signal.SIGINT)
    if record.state == "succeeded":
        return 0
    if record.reason is not None and record.reason.startswith(DEADLINE_EXCEEDED):
        return DEADLINE_STATUS
    if not record.spec.get("array") and record.exit_code not in (None, 0):
        return record.exit_code  # a single run exits as its command did
    return 1


def pipeline_status(record: PipelineRecord) -> int:
    """What `containerexec pipeline run` exits with for this (finished) run."""
    if record.state == "cancelled":
        return 128 + (record.signal or signal.SIGINT)
    return 0 if record.state == "succeeded" else 1
