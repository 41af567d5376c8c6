"""An Azure ML `parallel` job -> a packed array of mini-batches, and the job that appends
their rows: a two-job sub-DAG, 'JOB/mini_batches' and 'JOB/append_rows'.

    score:
      type: parallel
      inputs: {data: {type: uri_file, path: ./lines.txt}, model: ...}
      outputs: {scores: {type: uri_file}}
      input_data: ${{inputs.data}}          uri_folder: its files; uri_file: its lines
      mini_batch_size: "10"                 files or lines per mini-batch (one shard each)
      max_concurrency_per_instance: 2       -> array.max_parallel
      retry_settings: {max_retries: 2, timeout: 60}   -> retries, resources.timeout
      error_threshold: 5                    -> array.max_failed_shards (6)
      task: {type: run_function, code: ./src, entry_script: score.py, environment: ...,
             program_arguments: --model ${{inputs.model}}, append_row_to: ${{outputs.scores}}}

Each mini-batch runs a generated driver (DRIVER, Python's standard library only): it
imports the entry script, calls `init()` and then `run(mini_batch)` with the list of
file paths or lines, and writes what `run` returns, one row a line, to its own file;
the mini-batch fails when `run` raises or returns fewer rows than it was given, as in
Azure ML. The second job appends the rows of every mini-batch, in mini-batch order,
to the `append_row_to` output; with no `append_row_to` (summary only) there is none.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from containerexec.errors import SpecError
from containerexec.formats import amlsubdag as subdag
from containerexec.formats.azureml import Converted, convert_component
from containerexec.model import yamlsource
from containerexec.model.spec import validate_spec

Loc = yamlsource.Loc
KEYS = {
    "type", "inputs", "outputs", "input_data", "mini_batch_size", "task", "retry_settings",
    "max_concurrency_per_instance", "error_threshold", "mini_batch_error_threshold",
    "environment_variables", "description", "display_name",
}  # fmt: skip
TASK_KEYS = {"type", "code", "entry_script", "environment", "program_arguments", "append_row_to"}
ROWS = "aml_rows"  # the mini-batches' rows, one file each, before they are appended
RUN_JOB, APPEND_JOB = "mini_batches", "append_rows"
AZURE_RETRIES, AZURE_TIMEOUT_S = 2, 60  # Azure ML's defaults for retry_settings
_OUT_REF = re.compile(r"\$\{\{\s*outputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SEGMENT = re.compile(r"\$\[\[(.*?)\]\]", re.S)

DRIVER = r"""
import importlib.util, json, os, sys
cfg, data, batch, index, rows, *args = sys.argv[1:]
cfg = json.loads(cfg)
items = json.loads(batch)
mini_batch = [os.path.join(data, p) for p in items] if cfg["files"] else items
sys.argv = [cfg["entry"], *args]
sys.path.insert(0, os.getcwd())
spec = importlib.util.spec_from_file_location("entry_script", cfg["entry"])
entry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(entry)
if hasattr(entry, "init"):
    entry.init()
got = entry.run(mini_batch)
if hasattr(got, "to_csv"):
    lines = got.to_csv(sep=" ", header=False, index=False).splitlines()
else:
    lines = [str(row) for row in (got or [])]
if rows:
    with open(os.path.join(rows, "%06d.txt" % int(index)), "w") as f:
        f.writelines(line.replace("\n", " ") + "\n" for line in lines)
if len(lines) < len(mini_batch):
    sys.exit("mini-batch %s: run() returned %d results for %d items"
             % (index, len(lines), len(mini_batch)))
"""
APPEND = r"""
import os, sys
rows, out, name = sys.argv[1:]
target = os.path.join(out, name) if name else out
with open(target, "w") as f:
    for part in sorted(os.listdir(rows)):
        with open(os.path.join(rows, part)) as r:
            f.write(r.read())
"""


def load(p: subdag.Owner, job: str, raw: dict[str, Any], name: str) -> subdag.Expanded | None:
    """The parallel job as a sub-DAG whose inputs are the job's own; None: a problem of `p`."""
    loc: Loc = ("jobs", job)
    p.ignore(raw, KEYS, loc)
    task = raw.get("task")
    if not isinstance(task, dict):
        p.problem((*loc, "task"), "expected task: {type: run_function, ...}", key=True)
        return None
    p.ignore(task, TASK_KEYS, (*loc, "task"))
    if task.get("type", "run_function") != "run_function":
        p.problem((*loc, "task", "type"), f"only run_function tasks run here, got '{task['type']}'")
        return None
    inputs = raw.get("inputs") or {}
    outputs = raw.get("outputs") or {}
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        p.problem(loc, "expected 'inputs' and 'outputs' to be mappings")
        return None
    # The task read as the command component it stands for, so its environment, code
    # and ports are converted as any component's are, located in this file.
    comp: dict[str, Any] = {"type": "command", "name": job, "command": "true"}
    comp |= {k: task[k] for k in ("code", "environment") if k in task}
    if "environment_variables" in raw:
        comp["environment_variables"] = raw["environment_variables"]
    comp["inputs"] = {n: p.inline_input(v, p.typing_components) for n, v in inputs.items()}
    comp["outputs"] = {n: p.inline_output(v) for n, v in outputs.items()}
    located = p.located_as(job, {**raw, "task": comp})
    try:
        converted = convert_component(
            located, (*loc, "task"), p.base, p.image_map, default_name=job
        )
    except SpecError as exc:
        p.problems += exc.problems
        return None
    module = converted.data
    problems_before = len(p.problems)
    if "partition_keys" in raw:
        p.problem(
            (*loc, "partition_keys"),
            "mltable partitions do not run here; split the input with mini_batch_size",
            key=True,
        )
    data_input = _input_data(p, raw, module, loc)
    size = _mini_batch_size(p, raw.get("mini_batch_size", 1), (*loc, "mini_batch_size"))
    entry = task.get("entry_script")
    if not isinstance(entry, str) or not entry:
        p.problem((*loc, "task", "entry_script"), "expected the entry script (score.py)", key=True)
    if "code" not in task:
        p.problem((*loc, "task", "code"), "expected the folder of the entry script", key=True)
    append = _append_to(p, task.get("append_row_to"), module, (*loc, "task", "append_row_to"))
    args = _arguments(p, task.get("program_arguments", ""), module, (*loc, "task"))
    if len(p.problems) > problems_before or data_input is None:
        return None
    files = module["inputs"][data_input]["type"] == "directory"
    config = json.dumps({"entry": entry, "files": files}, sort_keys=True)
    run = dict(module)
    run["outputs"] = {k: v for k, v in module["outputs"].items() if k != append}
    if append:
        run["outputs"][ROWS] = {"type": "directory"}
    rows = f"${{{{outputs.{ROWS}}}}}" if append else ""
    run["command"] = [
        "python3", "-c", DRIVER, config, f"${{{{inputs.{data_input}}}}}",
        "${{shard.value}}", "${{shard.index}}", rows, *args,
    ]  # fmt: skip
    kind = {"glob": {"input": data_input, "pattern": "**/*"}} if files else {}
    run["array"] = {
        **(kind or {"lines": {"input": data_input}}),
        "group": size,
        "batch_size": "auto",
        **_limits(p, raw, loc),
    }
    retry = raw.get("retry_settings") or {}
    retries = retry.get("max_retries", AZURE_RETRIES) if isinstance(retry, dict) else AZURE_RETRIES
    timeout = retry.get("timeout", AZURE_TIMEOUT_S) if isinstance(retry, dict) else AZURE_TIMEOUT_S
    run["retries"] = {"max_attempts": int(retries) + 1}
    run["resources"] = {**run.get("resources", {}), "timeout": timeout}
    where = f"{p.path}#{yamlsource.dotted(loc)}"
    try:
        spec = validate_spec(run, where)
    except SpecError as exc:
        p.problems += [p.src.problem(loc, f"{q.loc}: {q.message}") for q in exc.problems]
        return None
    ref = f"{p.inline_ref(job)}/{RUN_JOB}"
    p.record(ref, Converted(spec, run, converted.ignored, converted.notes), job)
    declared = {n: dict(v) for n, v in module["inputs"].items()}
    jobs = {
        f"{name}/{RUN_JOB}": {"module": ref, "inputs": {n: f"${{{{inputs.{n}}}}}" for n in inputs}}
    }
    outs = {o: f"${{{{jobs.{name}/{RUN_JOB}.outputs.{o}}}}}" for o in run["outputs"] if o != ROWS}
    if append:
        appender = _appender(module, append)
        aref = f"{p.inline_ref(job)}/{APPEND_JOB}"
        p.record(aref, Converted(validate_spec(appender, where), appender), job)
        rows_ref = f"${{{{jobs.{name}/{RUN_JOB}.outputs.{ROWS}}}}}"
        jobs[f"{name}/{APPEND_JOB}"] = {"module": aref, "inputs": {"rows": rows_ref}}
        outs[append] = f"${{{{jobs.{name}/{APPEND_JOB}.outputs.{append}}}}}"
    return subdag.Expanded(p.path, p.src, {"inputs": declared, "outputs": outs, "jobs": jobs})


def _input_data(
    p: subdag.Owner, raw: dict[str, Any], module: dict[str, Any], loc: Loc
) -> str | None:
    written = raw.get("input_data")
    m = re.fullmatch(
        r"\$\{\{\s*inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", str(written or "").strip()
    )
    port = module["inputs"].get(m.group(1)) if m else None
    if port is None or port["type"] not in ("directory", "file"):
        p.problem(
            (*loc, "input_data"),
            f"expected ${{{{inputs.NAME}}}} naming a uri_folder (its files) or uri_file (its "
            f"lines) input of this job, got '{written}'",
            key=written is None,
        )
        return None
    assert m is not None
    return m.group(1)


def _mini_batch_size(p: subdag.Owner, written: Any, loc: Loc) -> int:
    if isinstance(written, int) and not isinstance(written, bool) and written >= 1:
        return written
    if isinstance(written, str) and written.strip().isdigit() and int(written) >= 1:
        return int(written)
    p.problem(
        loc,
        f"expected a number of files or lines per mini-batch (10), got '{written}'; sizes "
        "such as '10kb' are for mltable tabular data, which does not run here",
    )
    return 1


def _append_to(p: subdag.Owner, written: Any, module: dict[str, Any], loc: Loc) -> str | None:
    """The output `append_row_to` names; None for a summary-only job."""
    if written is None:
        return None
    m = _OUT_REF.fullmatch(str(written).strip())
    if m is None or m.group(1) not in module["outputs"]:
        known = ", ".join(module["outputs"]) or "none"
        p.problem(loc, f"expected ${{{{outputs.NAME}}}} naming an output of this job ({known})")
        return None
    return m.group(1)


def _arguments(p: subdag.Owner, text: Any, module: dict[str, Any], loc: Loc) -> list[Any]:
    """program_arguments as argv words: each value one word, a `$[[...]]` an optional group."""
    out: list[Any] = []
    at = 0
    text = str(text or "")
    for m in [*_SEGMENT.finditer(text), None]:
        end = m.start() if m else len(text)
        try:
            out += shlex.split(text[at:end])
            if m:
                out.append(shlex.split(m.group(1)))
        except ValueError as exc:
            p.problem((*loc, "program_arguments"), f"cannot split the arguments: {exc}")
            return []
        at = m.end() if m else end
    return out


def _limits(p: subdag.Owner, raw: dict[str, Any], loc: Loc) -> dict[str, Any]:
    """max_concurrency_per_instance and the error thresholds (-1: no limit) as array limits."""
    out: dict[str, Any] = {}
    if isinstance(raw.get("max_concurrency_per_instance"), int):
        out["max_parallel"] = max(1, raw["max_concurrency_per_instance"])
    limits = [
        raw[k]
        for k in ("error_threshold", "mini_batch_error_threshold")
        if isinstance(raw.get(k), int) and raw[k] >= 0
    ]
    if limits:
        # Azure ML fails the job once failures exceed the threshold: no new one starts then.
        out["max_failed_shards"] = min(limits) + 1
    return out


def _appender(module: dict[str, Any], append: str) -> dict[str, Any]:
    """The module that appends every mini-batch's rows to the `append` output, in order."""
    kind = module["outputs"][append]["type"]
    name = "" if kind == "file" else "parallel_run_step.txt"  # Azure ML's name in a folder
    return {
        "name": f"{module['name']}-append"[:64],
        "environment": module["environment"],
        "inputs": {"rows": {"type": "directory"}},
        "outputs": {append: {"type": kind}},
        "command": [
            "python3",
            "-c",
            APPEND,
            "${{inputs.rows}}",
            f"${{{{outputs.{append}}}}}",
            name,
        ],  # fmt: skip
    }
