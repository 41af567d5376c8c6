"""A pipeline's DAG for people: its links, its generations, as text and as Graphviz DOT."""

from __future__ import annotations

import graphlib

from containerexec.model.pipeline import PipelineSpec, input_refs, parse_value


def edges(pipeline: PipelineSpec) -> list[tuple[str, str, str, str]]:
    """(upstream job, its output, downstream job, its input) for every link, sorted."""
    out = []
    for name, job in pipeline.jobs.items():
        for in_name, value in job.inputs.items():
            try:
                source = parse_value(value)
            except ValueError:
                continue
            if source.kind == "job":
                out.append((source.name, source.output, name, in_name))
    return sorted(out)


def outputs(pipeline: PipelineSpec) -> list[tuple[str, str, str]]:
    """(pipeline output, job, job output) for every well-formed pipeline output."""
    out = []
    for name, value in pipeline.outputs.items():
        try:
            source = parse_value(value)
        except ValueError:
            continue
        out.append((name, source.name, source.output))
    return out


def levels(pipeline: PipelineSpec) -> list[list[str]]:
    """Jobs grouped by generation: each group needs only jobs of earlier groups."""
    ts = graphlib.TopologicalSorter({n: set() for n in pipeline.jobs})
    for up, _o, down, _i in edges(pipeline):
        ts.add(down, up)
    ts.prepare()
    order = list(pipeline.jobs)
    out = []
    while ts.is_active():
        ready = sorted(ts.get_ready(), key=order.index)
        out.append(ready)
        ts.done(*ready)
    return out


def render_text(pipeline: PipelineSpec) -> str:
    """The DAG as text: one line per job, by generation, with the links into it."""
    links = edges(pipeline)
    lines = [f"pipeline {pipeline.name} {pipeline.version}: {len(pipeline.jobs)} jobs"]
    if pipeline.inputs:
        lines.append(
            "  inputs: " + ", ".join(f"{n} ({p.type})" for n, p in pipeline.inputs.items())
        )
    for depth, group in enumerate(levels(pipeline)):
        for name in group:
            job = pipeline.jobs[name]
            froms = [f"{u}.{o} -> {i}" for u, o, d, i in links if d == name]
            froms += [f"inputs.{n} -> {k}" for k, v in job.inputs.items() for n in input_refs(v)]
            arrow = f"  <- {', '.join(froms)}" if froms else ""
            lines.append(f"  [{depth}] {name} ({job.module}){arrow}")
    for name, job_name, output in outputs(pipeline):
        lines.append(f"  output {name} <- {job_name}.{output}")
    return "\n".join(lines)


def render_dot(pipeline: PipelineSpec) -> str:
    """The DAG in Graphviz DOT: jobs as boxes, pipeline inputs and outputs as ellipses."""

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {q(pipeline.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for name in pipeline.inputs:
        lines.append(f"  {q('in:' + name)} [label={q(name)}, shape=ellipse];")
    for name, job in pipeline.jobs.items():
        label = q(name)[:-1] + "\\n" + q(job.module)[1:]  # DOT's own line break
        lines.append(f"  {q(name)} [label={label}];")
    for up, out, down, inp in edges(pipeline):
        lines.append(f"  {q(up)} -> {q(down)} [label={q(out + ' -> ' + inp)}];")
    for name, job in pipeline.jobs.items():
        for in_name, value in job.inputs.items():
            for ref in input_refs(value):
                lines.append(f"  {q('in:' + ref)} -> {q(name)} [label={q(in_name)}];")
    for name, job_name, output in outputs(pipeline):
        lines.append(f"  {q('out:' + name)} [label={q(name)}, shape=ellipse];")
        lines.append(f"  {q(job_name)} -> {q('out:' + name)} [label={q(output)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
