"""Facts -> one self-contained HTML page: the data as inline JSON, drawn by an inline script.

Nothing is fetched: the stylesheet and script are inlined, and a Content-Security-Policy
forbids any request, so the file opens the same from a disk, a browser's downloads or
an e-mail attachment. Every text from the records reaches the page as JSON data and is
put in with textContent, never as markup.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from containerexec.errors import UntrustedInput

# No network, no frames, no plugins; only the inline style and script below.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def _asset(name: str) -> str:
    return resources.files("containerexec.report").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Any, where: str) -> str:
    """JSON that cannot end its <script> element early ('</script>' in a log line)."""
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN or infinity in a hand-made record: JSON.parse would refuse it
        raise UntrustedInput(where, "a record holds a number that is not finite") from None
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(facts: dict[str, Any], title: str, where: str = "report") -> str:
    """The whole page for a run's or a pipeline run's facts (report/facts.py); `where` names
    the records in an error."""
    data = _json_for_script(facts, where)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{_asset('report.css')}</style>\n</head>\n<body>\n"
        '<main id="report"><noscript>This report draws its charts with JavaScript; '
        "allow scripts for this file to see them.</noscript></main>\n"
        f'<script type="application/json" id="report-data">{data}</script>\n'
        f"<script>\n{_asset('report.js')}</script>\n</body></html>\n"
    )


def write(path: Path, text: str) -> bool:
    """Write the page atomically (a reader never sees half of it); True when it replaced a
    file that was there."""
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return existed
