"""Packed Python values (issue 22): a batch whose values all call one Python module runs
them in one interpreter, driven by run/packing/pydriver.py instead of the sh driver.

Python modules made by authoring/ run `python3 -c <launch> NAME=VALUE...` with the
module's entry in CONTAINEREXEC_PY_ENTRY; unpacked, python3 starts and imports the
module again for every value, which was most of a small value's time. Here the batch's
values are written to ctl/batch.json (the environment they share once, each value's
own variables, argv and output links) beside the driver's text, and the container's
command is `python3 ctl/driver.py`. The host follows the same state files as for the
sh driver (run/packing/batch.py), so records, logs, retries and repro do not change.
"""

from __future__ import annotations

import json
from pathlib import Path

from containerexec.model.invocation import Invocation
from containerexec.run.packing.scripts import ROOT, output_links

ENTRY = "CONTAINEREXEC_PY_ENTRY"  # authoring/functions.py ENV_ENTRY
DRIVER = Path(__file__).with_name("pydriver.py")


def shared(invs: list[Invocation]) -> bool:
    """Whether these values can share one interpreter: all the same Python module's
    `python3 -c <launch> ...`."""
    first = invs[0]
    return ENTRY in first.env and all(
        len(i.argv) >= 3
        and i.argv[1] == "-c"
        and i.argv[:3] == first.argv[:3]
        and i.env.get(ENTRY) == first.env[ENTRY]
        for i in invs
    )


def write(
    ctl: Path, values: list[tuple[str, Invocation]], *, timeout_s: float | None, grace_s: float
) -> list[str]:
    """The driver and ctl/batch.json for `values` (name, Invocation); returns the batch
    container's argv."""
    invs = [inv for _, inv in values]
    common = dict(invs[0].env)
    for inv in invs[1:]:
        common = {k: v for k, v in common.items() if inv.env.get(k) == v}
    batch = {
        "names": [name for name, _ in values],
        "timeout_s": timeout_s,
        "grace_s": grace_s,
        "env": common,
        "values": {
            name: {
                "argv": inv.argv,
                "env": {k: v for k, v in inv.env.items() if k not in common},
                "links": output_links(inv),
            }
            for name, inv in values
        },
    }
    (ctl / "batch.json").write_text(json.dumps(batch))
    (ctl / "driver.py").write_text(DRIVER.read_text())
    # -I: the image's PYTHON* variables (PYTHONPATH, ...) are for the values, not the driver.
    return [invs[0].argv[0], "-I", f"{ROOT}/ctl/driver.py"]
