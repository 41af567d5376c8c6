"""Report: how long `containerexec report` takes to build a large failing run's page, its size,
and how long headless Chromium takes to draw it.

    .venv/bin/python bench/report.py                      # 2,000 and 10,000 shards
    .venv/bin/python bench/report.py --n 2000 --screenshot docs/img/report.png

Each run store is written first, without an engine (tests/synthetic_runs.py: about 5% of
the shards fail, 1% are OOM-killed, 5% succeed on a retry, every attempt has a trace).
`build` is records -> HTML file; it is also printed as a ratio to merely reading and
validating the same records (report/sources.py, the shard models with their traces) in
the same run, which no report can beat. `drawn` is the page's script from start to end;
`ready` is from the page's start (parsing the HTML included) to the end of drawing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic_runs import write_run  # noqa: E402

from containerexec.report import make_report, page, sources  # noqa: E402
from containerexec.store.tree import RunStore  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def measure(n: int, root: Path, browser: Any, screenshot: Path | None) -> dict[str, float]:
    run_id = write_run(root / "runs", n)
    store = RunStore(root / "runs")
    started = time.perf_counter()
    loaded = sources.load_run(store, run_id)
    load_s = time.perf_counter() - started
    assert len(loaded.shards) == n
    started = time.perf_counter()
    out = root / "report.html"
    page.write(out, make_report(store, run_id).html)
    build_s = time.perf_counter() - started
    view = browser.new_page(viewport={"width": 1280, "height": 2000})
    view.goto(out.as_uri())
    view.wait_for_selector("#report[data-drawn-ms]", timeout=60_000)
    drawn = float(view.get_attribute("#report", "data-drawn-ms"))
    ready = float(view.get_attribute("#report", "data-ready-ms"))
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        view.screenshot(path=str(screenshot), full_page=True)
    view.close()
    return {
        "n": n,
        "mib": out.stat().st_size / (1 << 20),
        "load_s": load_s,
        "build_s": build_s,
        "drawn_ms": drawn,
        "ready_ms": ready,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="2000,10000", help="shard counts, comma-separated")
    parser.add_argument("--screenshot", type=Path, help="a PNG of the first count's report")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for k, n in enumerate(int(x) for x in args.n.split(",")):
            shot = args.screenshot if k == 0 else None
            rows.append(measure(n, Path(tmp) / str(n), browser, shot))
        browser.close()
    print(
        f"{'shards':>7} {'size MiB':>9} {'load s':>7} {'build s':>8} {'build/load':>10} "
        f"{'drawn ms':>9} {'ready ms':>9}"
    )
    for r in rows:
        print(
            f"{r['n']:>7} {r['mib']:>9.2f} {r['load_s']:>7.2f} {r['build_s']:>8.2f} "
            f"{r['build_s'] / r['load_s']:>10.2f} {r['drawn_ms']:>9.0f} {r['ready_ms']:>9.0f}"
        )


if __name__ == "__main__":
    main()
