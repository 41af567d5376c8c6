"""Reports: a run or a pipeline run, from its records, as one self-contained HTML page.

sources.py reads the records (and each attempt's resource trace) from the store,
facts.py turns them into compact data (pure), page.py wraps that data with the inline
stylesheet and script (report.css, report.js) that draw it in the browser.
"""

from __future__ import annotations

from dataclasses import dataclass

from containerexec.report import facts, page, sources
from containerexec.store.tree import RunStore

__all__ = ["Report", "make_report"]


@dataclass(frozen=True)
class Report:
    html: str
    kind: str  # 'run' | 'pipeline'
    id: str
    shards: int  # shard records drawn, over all runs


def make_report(store: RunStore, ref: str) -> Report:
    """The report of RUN: a run id, a pipeline run id, a unique prefix of one, or 'last'.

    Raises:
        RecordError: no such run, an ambiguous prefix, or an unreadable record.
    """
    exact_run = (store.run_dir(ref) / "run.json").is_file()
    pipeline_id = None if exact_run or ref == "last" else store.resolve_pipeline(ref)
    if pipeline_id is not None:
        recs = sources.load_pipeline_run(store, pipeline_id)
        data = facts.pipeline_facts(recs)
        count = sum(len(r.shards) for r in recs.runs.values())
        title = f"pipeline {pipeline_id}: {recs.pipeline.state}"
        html = page.render({"pipeline": data}, title, str(store.pipeline_dir(pipeline_id)))
        return Report(html, "pipeline", pipeline_id, count)
    run = sources.load_run(store, store.resolve_id(ref))
    data = facts.run_facts(run)
    title = f"run {run.run.run_id}: {run.run.state}"
    html = page.render({"run": data}, title, str(store.run_dir(run.run.run_id)))
    return Report(html, "run", run.run.run_id, len(run.shards))
