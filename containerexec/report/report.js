/* containerexec report: draws the page's inline JSON with plain SVG. No library, no request.
 * Large runs stay fast: the timeline draws only the rows in view (redrawn on scroll), the
 * charts draw at most one bar per two pixels (the largest of each group of shards), and a
 * failure group's list of repro commands is built when it is opened. */
(function () {
  "use strict";
  var started = performance.now();
  var SVG = "http://www.w3.org/2000/svg";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var root = document.getElementById("report");
  // A shard row: [index, state, cached, peak memory, cpu s, wall s, read, write, attempts];
  // an attempt: [start s, duration s, kind, exit code?].
  var MEM = 3, CPU = 4, WALL = 5, RD = 6, WR = 7, ATT = 8;
  var OUTCOMES = [["ok", "succeeded"], ["cached", "cached"], ["failed", "failed"],
    ["oom", "OOM-killed"], ["timeout", "timed out"], ["cancelled", "cancelled"],
    ["lost", "lost engine or node (run again)"]];

  function h(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }
  function s(tag, attrs, parent, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }
  function bytes(n) {
    if (n === null || n === undefined) return "-";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0) : n) + " " + units[i];
  }
  function secs(x) {
    if (x === null || x === undefined) return "-";
    if (x < 60) return x.toFixed(x < 10 ? 2 : 1) + " s";
    if (x < 3600) { var t = Math.round(x); return Math.floor(t / 60) + " min " + (t % 60) + " s"; }
    return (x / 3600).toFixed(1) + " h";
  }
  function when(t) { return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"; }
  function pct(a, b) { return b ? Math.round(100 * a / b) + "%" : "-"; }
  function kindClass(kind) {
    if (kind === "ok" || kind === "oom" || kind === "cancelled") return kind;
    if (kind === "timeout" || kind === "time_limit") return "timeout";
    if (kind === "engine_lost" || kind === "node_lost" || kind === "preempted") return "lost";
    return "failed";
  }
  function ranges(ids) {
    var out = [], i = 0;
    while (i < ids.length) {
      var j = i;
      while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
      out.push(j > i ? ids[i] + "-" + ids[j] : String(ids[i]));
      i = j + 1;
    }
    return out.length > 60 ? out.slice(0, 60).join(", ") + ", ... (" + ids.length + " shards)" : out.join(", ");
  }
  function legend(parent, items) {
    var box = h("div", {class: "legend"}, parent);
    items.forEach(function (it) { var l = h("span", {}, box); h("i", {class: "bg-" + it[0]}, l); l.appendChild(document.createTextNode(it[1])); });
  }
  function card(parent, n, label, tone) {
    var c = h("div", {class: "card" + (tone ? " " + tone : "")}, parent);
    h("div", {class: "n"}, c, n); h("div", {class: "l"}, c, label);
  }
  function note(parent, text) { return h("p", {class: "note"}, parent, text); }
  function width(el) { return Math.max(480, Math.floor(el.clientWidth - 24)); }
  function ticks(svg, max, left, plot, y, fmt) {
    var step = Math.max(1, Math.floor(plot / 110));
    for (var i = 0; i <= step; i++) {
      var x = left + plot * i / step;
      s("line", {class: "grid", x1: x, x2: x, y1: y - 4, y2: y}, svg);
      s("text", {x: x, y: y - 6, "text-anchor": i === 0 ? "start" : i === step ? "end" : "middle"}, svg, fmt(max * i / step));
    }
  }

  function drawRun(run, parent, heading) {
    var sec = h("section", {id: "run-" + run.id, class: "run"}, parent);
    h(heading, {}, sec, (heading === "h1" ? "Run " : "Job run ") + run.id);
    var meta = h("p", {class: "meta"}, sec);
    [["module", run.module + " " + run.version], ["state", run.state], ["on", run.placement],
      ["host", run.host || "-"], ["started", when(run.started_at)], ["took", secs(run.wall_s)]].forEach(function (kv) {
      meta.appendChild(document.createTextNode(kv[0] + " ")); h("b", {}, meta, kv[1]); meta.appendChild(document.createTextNode("   "));
    });
    h("p", {class: "meta mono"}, sec, "image " + run.image);
    if (run.reason) h("p", {class: "warnline"}, sec, "stopped early: " + run.reason);
    var c = run.counts || {}, cards = h("div", {class: "cards"}, sec);
    var attempts = 0, retried = 0;
    run.shards.forEach(function (r) { attempts += r[ATT].length; if (r[ATT].length > 1) retried++; });
    card(cards, run.shard_count, "shards");
    card(cards, c.succeeded || 0, "succeeded");
    card(cards, c.failed || 0, "failed", c.failed ? "bad" : "");
    if (c.cancelled) card(cards, c.cancelled, "cancelled");
    if (c.pending) card(cards, c.pending, "not started");
    card(cards, attempts, "attempts (" + retried + " shards retried)", retried ? "warn" : "");
    var peak = maxOf(run.shards, MEM);
    if (peak) card(cards, bytes(peak.v), "largest peak memory" + (run.memory_limit ? ", " + pct(peak.v, run.memory_limit) + " of the limit " + bytes(run.memory_limit) : ""), run.memory_limit && peak.v >= 0.9 * run.memory_limit ? "warn" : "");
    if (peak && run.memory_limit) {
      var over = run.shards.filter(function (r) { return r[MEM] !== null && r[MEM] >= 0.9 * run.memory_limit; }).length;
      card(cards, over, "shards above 90% of the memory limit", over ? "warn" : "");
    }
    // What went wrong first, then the memory picture, then when each attempt ran.
    failures(run, sec);
    resources(run, sec);
    timeline(run, sec);
  }

  function maxOf(rows, col) {
    var best = null;
    for (var i = 0; i < rows.length; i++) { var v = rows[i][col]; if (v !== null && (best === null || v > best.v)) best = {v: v, i: i}; }
    return best;
  }

  function timeline(run, sec) {
    h("h3", {}, sec, "Timeline of attempts");
    var panel = h("div", {class: "panel timeline"}, sec);
    var rows = run.shards, end = Math.max(run.end_s || 0, 0.001);
    if (!rows.length) { note(panel, "No shard has a record yet."); return; }
    var W = width(panel), LEFT = 64, PLOT = W - LEFT - 10, ROW = 14;
    var ctl = h("div", {class: "controls"}, panel);
    var lab = h("label", {}, ctl, "show ");
    var sel = h("select", {class: "rows"}, lab);
    var all = rows.map(function (r, i) { return i; });
    var choices = {
      all: all,
      failed: all.filter(function (i) { return run.states[rows[i][1]] === "failed"; }),
      retried: all.filter(function (i) { return rows[i][ATT].length > 1; })
    };
    Object.keys(choices).forEach(function (k) { h("option", {value: k}, sel, k + " (" + choices[k].length + ")"); });
    legend(ctl, OUTCOMES.concat([["retried", "dashed: an attempt that was retried"]]));
    overview(panel, run, end, LEFT, PLOT, W);
    var axis = s("svg", {width: W, height: 20}, panel);
    ticks(axis, end, LEFT, PLOT, 20, secs);
    var box = h("div", {class: "gantt"}, panel), spacer = h("div", {}, box);
    var svg = s("svg", {width: W, class: "rows"}, box);
    var shown = all, pending = false;
    function draw() {
      pending = false;
      var top = box.scrollTop, first = Math.max(0, Math.floor(top / ROW) - 10);
      var last = Math.min(shown.length, Math.ceil((top + box.clientHeight) / ROW) + 10);
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      svg.setAttribute("height", Math.max(1, (last - first) * ROW));
      svg.style.top = first * ROW + "px";
      for (var r = first; r < last; r++) {
        var pos = shown[r], row = rows[pos], y = (r - first) * ROW, at = row[ATT];
        s("text", {x: LEFT - 6, y: y + 11, "text-anchor": "end"}, svg, row[0]);
        for (var k = 0; k < at.length; k++) {
          var a = at[k], kind = run.kinds[a[2]];
          var c = kindClass(kind) + (k < at.length - 1 ? " retried" : "");
          var bar = s("rect", {x: LEFT + a[0] / end * PLOT, y: y + 2, width: Math.max(1.5, a[1] / end * PLOT), height: ROW - 4, class: "o-" + c}, svg);
          s("title", {}, bar, "shard " + row[0] + " (" + run.values[pos] + "), attempt " + (k + 1) + "/" + at.length + ": " +
            (kind === "ok" ? "succeeded" : kind + (a.length > 3 ? " " + a[3] : "")) + ", " + secs(a[1]) + ", started at " + secs(a[0]));
        }
        if (!at.length && row[2]) s("rect", {x: LEFT, y: y + 2, width: 4, height: ROW - 4, class: "o-cached"}, svg);
      }
    }
    function show(key) {
      shown = choices[key];
      spacer.style.height = shown.length * ROW + "px";
      box.style.height = Math.min(Math.max(shown.length, 1) * ROW, 336) + "px";
      box.scrollTop = 0;
      draw();
    }
    box.addEventListener("scroll", function () { if (!pending) { pending = true; requestAnimationFrame(draw); } });
    sel.addEventListener("change", function () { show(sel.value); });
    show("all");
  }

  function overview(panel, run, end, LEFT, PLOT, W) {
    // Attempts running at each moment, stacked by outcome: the whole run at a glance.
    var B = Math.max(1, Math.min(240, Math.floor(PLOT / 3))), H = 56, classes = ["ok", "failed", "oom", "timeout", "cancelled", "lost"];
    var counts = classes.map(function () { return new Float64Array(B); });
    run.shards.forEach(function (row) {
      row[ATT].forEach(function (a) {
        var c = classes.indexOf(kindClass(run.kinds[a[2]]));
        var b0 = Math.min(B - 1, Math.floor(a[0] / end * B)), b1 = Math.min(B - 1, Math.floor((a[0] + a[1]) / end * B));
        for (var b = b0; b <= b1; b++) counts[c][b] += 1;
      });
    });
    var top = 1;
    for (var b = 0; b < B; b++) { var t = 0; for (var c = 0; c < classes.length; c++) t += counts[c][b]; top = Math.max(top, t); }
    var svg = s("svg", {width: W, height: H + 4, class: "overview"}, panel), bw = PLOT / B;
    s("text", {x: LEFT - 6, y: 12, "text-anchor": "end"}, svg, Math.round(top));
    s("text", {x: LEFT - 6, y: H, "text-anchor": "end"}, svg, "running");
    for (b = 0; b < B; b++) {
      var y = H;
      for (c = 0; c < classes.length; c++) {
        var n = counts[c][b];
        if (!n) continue;
        var hh = n / top * (H - 4);
        y -= hh;
        s("rect", {x: LEFT + b * bw, y: y, width: Math.max(bw - 0.3, 0.5), height: hh, class: "o-" + classes[c]}, svg);
      }
    }
    s("line", {class: "axis", x1: LEFT, x2: LEFT + PLOT, y1: H, y2: H}, svg);
  }

  function resources(run, sec) {
    h("h3", {}, sec, "Memory and CPU per shard");
    var panel = h("div", {class: "panel resources"}, sec), rows = run.shards, limit = run.memory_limit;
    if (!maxOf(rows, MEM) && !maxOf(rows, CPU)) {
      note(panel, "No resource trace in these records: they were written before containerexec recorded one, or the host could not give the figures.");
      return;
    }
    var peak = maxOf(rows, MEM);
    if (peak && limit) {
      var near = rows.filter(function (r) { return r[MEM] !== null && r[MEM] >= 0.9 * limit; });
      note(panel, "Largest peak: " + bytes(peak.v) + " (shard " + rows[peak.i][0] + "), " + pct(peak.v, limit) + " of the limit of " + bytes(limit) + "; " + near.length + " shard(s) passed 90% of it.");
      near.slice(0, 5).forEach(function (r) { h("div", {class: "warnline"}, panel, "shard " + r[0] + " peaked at " + bytes(r[MEM]) + ", " + pct(r[MEM], limit) + " of its memory limit " + bytes(limit)); });
      if (near.length > 5) note(panel, "... and " + (near.length - 5) + " more shards above 90% (the table below lists the largest).");
    } else if (peak) {
      note(panel, "Largest peak: " + bytes(peak.v) + " (shard " + rows[peak.i][0] + "); no memory limit was set.");
    }
    if (peak) bars(panel, run, MEM, limit, bytes, "peak memory");
    if (maxOf(rows, CPU)) bars(panel, run, CPU, null, secs, "CPU time");
    topTable(panel, run);
  }

  function bars(panel, run, col, limit, fmt, label) {
    var rows = run.shards, W = width(panel), LEFT = 64, PLOT = W - LEFT - 10, H = 130, TOP = 14;
    var nb = Math.min(rows.length, Math.max(1, Math.floor(PLOT / 2))), per = Math.ceil(rows.length / nb);
    nb = Math.ceil(rows.length / per);
    var best = [], top = limit || 0;
    for (var b = 0; b < nb; b++) {
      var m = maxOf(rows.slice(b * per, (b + 1) * per), col);
      best.push(m ? {v: m.v, i: b * per + m.i} : null);
      if (m) top = Math.max(top, m.v);
    }
    top = top * 1.08 || 1;
    h("div", {class: "note"}, panel, label + " per shard" + (per > 1 ? " (the largest of each " + per + " shards, in shard order)" : ", in shard order"));
    var svg = s("svg", {width: W, height: H + TOP + 4, class: "chart " + (col === MEM ? "memory" : "cpu")}, panel);
    var y = function (v) { return TOP + H - v / top * H; }, bw = PLOT / nb;
    [0, 0.5, 1].forEach(function (f) {
      s("line", {class: "grid", x1: LEFT, x2: LEFT + PLOT, y1: y(top * f / 1.08), y2: y(top * f / 1.08)}, svg);
      s("text", {x: LEFT - 6, y: y(top * f / 1.08) + 4, "text-anchor": "end"}, svg, fmt(top * f / 1.08));
    });
    best.forEach(function (m, b) {
      if (!m) return;
      var tone = limit && m.v >= limit ? " over" : limit && m.v >= 0.9 * limit ? " warn" : "";
      var rect = s("rect", {class: "bar" + tone, x: LEFT + b * bw, y: y(m.v), width: Math.max(bw - (bw > 3 ? 1 : 0.2), 0.6), height: Math.max(TOP + H - y(m.v), 0.5)}, svg);
      s("title", {}, rect, "shard " + rows[m.i][0] + " (" + run.values[m.i] + "): " + fmt(m.v) + (limit ? ", " + pct(m.v, limit) + " of the limit" : ""));
    });
    s("line", {class: "axis", x1: LEFT, x2: LEFT + PLOT, y1: TOP + H, y2: TOP + H}, svg);
    if (limit) {
      s("line", {class: "limit90", x1: LEFT, x2: LEFT + PLOT, y1: y(0.9 * limit), y2: y(0.9 * limit)}, svg);
      s("line", {class: "limit", x1: LEFT, x2: LEFT + PLOT, y1: y(limit), y2: y(limit)}, svg);
      s("text", {x: LEFT + PLOT, y: y(limit) - 3, "text-anchor": "end"}, svg, "limit " + bytes(limit));
    }
  }

  function topTable(panel, run) {
    var rows = run.shards.map(function (r, i) { return i; }).filter(function (i) { return run.shards[i][MEM] !== null; });
    rows.sort(function (a, b) { return run.shards[b][MEM] - run.shards[a][MEM]; });
    if (!rows.length) return;
    h("div", {class: "note"}, panel, "The shards with the largest peaks");
    var t = h("table", {}, panel), head = h("tr", {}, t);
    ["shard", "value", "peak memory", "of limit", "CPU", "wall", "read", "written"].forEach(function (x, i) { h("th", {class: i > 1 ? "r" : ""}, head, x); });
    rows.slice(0, 10).forEach(function (i) {
      var r = run.shards[i], tr = h("tr", {}, t);
      [r[0], run.values[i], bytes(r[MEM]), run.memory_limit ? pct(r[MEM], run.memory_limit) : "-", secs(r[CPU]), secs(r[WALL]), bytes(r[RD]), bytes(r[WR])].forEach(function (x, j) {
        h("td", {class: j > 1 ? "r" : "mono"}, tr, x);
      });
    });
  }

  function failures(run, sec) {
    var groups = run.failures;
    h("h3", {}, sec, "Failures by kind");
    var panel = h("div", {class: "panel failures"}, sec);
    if (!groups.length) { note(panel, "No shard failed."); return; }
    groups.forEach(function (g) {
      var box = h("div", {class: "kind " + kindClass(g.kind.split(" ")[0])}, panel);
      h("h4", {}, box, g.kind + ": " + g.count + " shard" + (g.count === 1 ? "" : "s"));
      g.signatures.forEach(function (sig, n) {
        var d = h("details", n === 0 ? {open: ""} : {}, box);
        h("summary", {}, d, sig.shards.length + " shard" + (sig.shards.length === 1 ? "" : "s") + ": " + sig.line);
        note(d, "shards " + ranges(sig.shards));
        note(d, "shard " + sig.example + ": " + sig.message + "; the end of its log (" + sig.log + "):");
        h("pre", {class: "tail"}, d, sig.tail.length ? sig.tail.join("\n") : "(the log is empty)");
        note(d, "Reproduce shard " + sig.example + " here (add --shell for a shell in its container):");
        h("pre", {class: "repro"}, d, sig.repro[0]);
        if (sig.repro.length > 1) {
          var more = h("details", {class: "all-repro"}, d);
          h("summary", {}, more, "the repro command of each of these " + sig.repro.length + " shards");
          more.addEventListener("toggle", function () {
            if (more.open && !more.getAttribute("data-filled")) { more.setAttribute("data-filled", "1"); h("pre", {class: "repro"}, more, sig.repro.join("\n")); }
          });
        }
      });
    });
  }

  function drawPipeline(p) {
    h("h1", {}, root, "Pipeline " + p.id);
    var meta = h("p", {class: "meta"}, root);
    [["pipeline", p.name + " " + p.version], ["state", p.state], ["host", p.host || "-"],
      ["started", when(p.started_at)], ["took", secs(p.wall_s)]].forEach(function (kv) {
      meta.appendChild(document.createTextNode(kv[0] + " ")); h("b", {}, meta, kv[1]); meta.appendChild(document.createTextNode("   "));
    });
    var tally = {};
    p.nodes.forEach(function (n) { tally[n.state] = (tally[n.state] || 0) + 1; });
    var cards = h("div", {class: "cards"}, root);
    card(cards, p.nodes.length, "jobs");
    Object.keys(tally).sort().forEach(function (k) { card(cards, tally[k], k, k === "failed" ? "bad" : ""); });
    h("h3", {}, root, "Jobs");
    var panel = h("div", {class: "panel dag"}, root);
    var COLW = 200, ROWH = 62, BW = 160, BH = 44, cols = 0, rowsN = 0, at = {};
    p.nodes.forEach(function (n) { cols = Math.max(cols, n.col + 1); rowsN = Math.max(rowsN, n.row + 1); at[n.name] = {x: 10 + n.col * COLW, y: 10 + n.row * ROWH}; });
    var svg = s("svg", {width: cols * COLW + 20, height: rowsN * ROWH + 20, class: "dag"}, panel);
    var marker = s("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto"}, s("defs", {}, svg));
    s("path", {d: "M0,0 L10,5 L0,10 z", style: "fill:#8a8f98;stroke:none"}, marker);
    p.edges.forEach(function (e) {
      var a = at[e[0]], b = at[e[1]];
      if (!a || !b) return;
      var x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2, mx = (x1 + x2) / 2;
      s("path", {d: "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2, "marker-end": "url(#arrow)"}, svg);
    });
    p.nodes.forEach(function (n) {
      var link = s("a", n.run ? {href: "#run-" + n.run} : {}, svg), xy = at[n.name];
      var dark = ["cached", "skipped", "pending"].indexOf(n.state) >= 0 ? " dark" : "";
      s("rect", {x: xy.x, y: xy.y, width: BW, height: BH, class: "job s-" + n.state}, link);
      s("text", {x: xy.x + 8, y: xy.y + 18, class: "name" + dark}, link, n.name);
      s("text", {x: xy.x + 8, y: xy.y + 35, class: "sub" + dark}, link, n.state + (n.shards ? " · " + n.shards + " shard" + (n.shards === 1 ? "" : "s") : ""));
      s("title", {}, link, n.name + ": module " + n.module + ", " + n.state + (n.message ? " - " + n.message : "") + (n.run ? " (click: its run below)" : " (no run)"));
    });
    legend(panel, [["ok", "ran"], ["cached", "cached"], ["failed", "failed"], ["pending", "skipped / not run"], ["cancelled", "cancelled"]]);
    note(panel, "Edges read from the " + p.edges_from + ". Click a job to go to its run.");
    p.nodes.filter(function (n) { return !n.run; }).forEach(function (n) {
      note(panel, "job " + n.name + ": " + n.state + (n.message ? " (" + n.message + ")" : "") + "; no run was started");
    });
    p.runs.forEach(function (run) { drawRun(run, root, "h2"); });
  }

  if (DATA.pipeline) drawPipeline(DATA.pipeline); else drawRun(DATA.run, root, "h1");
  var took = performance.now() - started;
  root.setAttribute("data-drawn-ms", took.toFixed(1));
  root.setAttribute("data-ready-ms", performance.now().toFixed(1));  // from the page's start
  window.reportDrawnMs = took;
})();
