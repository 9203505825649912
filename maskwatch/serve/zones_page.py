"""``/zones`` on the HTTP view: draw a zone (or a counting line) on the latest snapshot and copy its config.

The page shows ``/snapshot.jpg`` (``?source=NAME`` with several sources); each click adds a corner, in fractions of
the picture as the config takes them. It prints the YAML line for the config (``zones: [...]`` or ``lines: [...]``)
and, for a zone, the ``--zone`` form of the flag. Nothing is stored on the server: the page only reads.
"""

from __future__ import annotations

from maskwatch.serve.routes import HTML, Reply, Request

CSP = (
    "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; frame-ancestors 'none'"
)


def zones_page(request: Request) -> Reply:
    """The zone editor (a self-contained page: inline CSS and JS, the snapshot from the view itself)."""
    return Reply(PAGE.encode(), ctype=HTML, headers={"Content-Security-Policy": CSP})


def mount_zones(view) -> None:
    """Serve the zone editor on ``/zones`` of a :class:`~maskwatch.serve.web.WebView`."""
    view.add_route("/zones", zones_page)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>maskwatch zones</title>
<style>
body{margin:0;font:14px system-ui,sans-serif;background:#16181d;color:#e6e6e6}
header{padding:10px 16px;background:#20232b;display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
h1{margin:0;font-size:20px} header a{color:#9ecbff} label{color:#9aa4b2}
input,select,button{font:inherit;background:#1d2027;color:#e6e6e6;border:1px solid #3a3f4b;border-radius:4px}
main{padding:16px;display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
#board{position:relative;flex:2;min-width:320px;max-width:960px;cursor:crosshair;user-select:none}
#board img{display:block;width:100%;background:#000;border-radius:4px;min-height:120px}
#board svg{position:absolute;left:0;top:0;width:100%;height:100%}
aside{flex:1;min-width:280px} pre{white-space:pre-wrap;word-break:break-all;background:#1d2027;padding:8px;
border-radius:4px;border-left:4px solid #3a7bd5;margin:4px 0 12px} #problem{color:#ff8a8e;min-height:1.2em}
h2{font-size:15px;margin:0 0 4px}
</style></head><body>
<header><h1>maskwatch zones</h1>
<label>draw <select id="shape"><option value="zone">a zone</option><option value="line">a counting line</option>
</select></label>
<label>name <input id="name" value="door" size="12" maxlength="64"></label>
<label id="mode-box">mode <select id="mode"><option>watch</option><option>ignore</option></select></label>
<label id="side-box" hidden>inside <select id="side"><option>left</option><option>right</option></select></label>
<label id="source-box" hidden>source <select id="source"></select></label>
<button id="undo">undo</button><button id="clear">clear</button><button id="reload">new snapshot</button>
<a href=".">live view</a></header>
<main><div id="board"><img id="snap" alt="latest snapshot"><svg id="overlay" viewBox="0 0 1 1"
preserveAspectRatio="none"></svg></div>
<aside><p id="hint"></p><p id="problem"></p>
<h2>config file</h2><pre id="yaml"></pre><h2 id="flag-title">command line</h2><pre id="flag"></pre></aside></main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let points = [];
const round = (v) => Math.round(Math.min(Math.max(v, 0), 1) * 1000) / 1000;
function snapshotUrl() {
  const q = new URLSearchParams({t: String(Date.now())});
  if ($("source").value) q.set("source", $("source").value);
  return "snapshot.jpg?" + q;
}
function yamlName(name) {  // a plain YAML scalar when safe, else a quoted (JSON) string, which YAML reads too
  return /^[A-Za-z0-9_][A-Za-z0-9_ .-]*$/.test(name) && !/\\s$/.test(name) ? name : JSON.stringify(name);
}
function crosses(p1, p2, q1, q2) {
  const c = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  return c(q1, q2, p1) * c(q1, q2, p2) < 0 && c(p1, p2, q1) * c(p1, p2, q2) < 0;
}
function problem() {
  const line = $("shape").value === "line", name = $("name").value.trim();
  if (!name || /[\\/?&#]/.test(name)) return "the name must be printable text without / ? & #";
  if (line) return points.length === 2 && points[0][0] === points[1][0] && points[0][1] === points[1][1]
    ? "the line's two points are the same" : "";
  const n = points.length;
  let area = 0;
  for (let i = 0; i < n; i++) { const a = points[i], b = points[(i + 1) % n]; area += a[0] * b[1] - b[0] * a[1]; }
  if (n >= 3 && Math.abs(area) / 2 < 1e-6) return "the polygon has no area (its points are on one line)";
  for (let i = 0; i < n; i++) for (let j = i + 2; j < n; j++) {
    if (i === 0 && j === n - 1) continue;
    if (crosses(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]))
      return "the polygon crosses itself (edge " + (i + 1) + " crosses edge " + (j + 1) + "): maskwatch refuses it";
  }
  return "";
}
function draw() {
  const line = $("shape").value === "line", svg = $("overlay");
  const shape = document.createElementNS(SVG, line ? "polyline" : "polygon");
  shape.setAttribute("points", points.map((p) => p.join(",")).join(" "));
  shape.setAttribute("fill", line ? "none" : "rgba(0,220,255,0.18)");
  shape.setAttribute("stroke", line ? "#ffe600" : "#00dcff");
  shape.setAttribute("stroke-width", "2"); shape.setAttribute("vector-effect", "non-scaling-stroke");
  const dots = points.map((p) => {
    const d = document.createElementNS(SVG, "ellipse");
    d.setAttribute("cx", p[0]); d.setAttribute("cy", p[1]);
    const box = svg.getBoundingClientRect();
    d.setAttribute("rx", 4 / Math.max(box.width, 1)); d.setAttribute("ry", 4 / Math.max(box.height, 1));
    d.setAttribute("fill", "#fff"); return d;
  });
  svg.replaceChildren(shape, ...dots);
}
function show() {
  const line = $("shape").value === "line", name = yamlName($("name").value.trim());
  const list = points.map((p) => "[" + p[0] + ", " + p[1] + "]").join(", ");
  const need = line ? 2 : 3, ready = points.length >= need, why = problem();
  $("mode-box").hidden = line; $("side-box").hidden = !line;
  $("flag-title").hidden = line; $("flag").hidden = line;
  $("hint").textContent = ready ? points.length + " points" : "click " + (need - points.length) +
    " more point(s) on the picture" + (line ? " (the line's two ends)" : " (the zone's corners)");
  $("problem").textContent = ready ? why : "";
  if (!ready) { $("yaml").textContent = ""; $("flag").textContent = ""; draw(); return; }
  if (line) {
    $("yaml").textContent = "lines: [{name: " + name + ", points: [" + list + "], in: " + $("side").value + "}]";
  } else {
    $("yaml").textContent = "zones: [{name: " + name + ", polygon: [" + list + "], mode: " + $("mode").value + "}]";
    $("flag").textContent = '--zone "' + points.map((p) => p[0] + "," + p[1]).join(" ") + '"';
  }
  draw();
}
$("board").addEventListener("click", (ev) => {
  const box = $("snap").getBoundingClientRect();
  const p = [round((ev.clientX - box.left) / box.width), round((ev.clientY - box.top) / box.height)];
  if ($("shape").value === "line" && points.length >= 2) points = [points[1]];
  points.push(p); show();
});
$("undo").addEventListener("click", () => { points.pop(); show(); });
$("clear").addEventListener("click", () => { points = []; show(); });
$("reload").addEventListener("click", () => { $("snap").src = snapshotUrl(); });
$("shape").addEventListener("change", () => { points = []; show(); });
for (const id of ["name", "mode", "side"]) $(id).addEventListener("input", show);
$("source").addEventListener("change", () => { $("snap").src = snapshotUrl(); });
window.addEventListener("resize", draw);
async function sources() {  // several sources: pick whose snapshot to draw on
  try {
    const s = await (await fetch("status")).json();
    if (!Array.isArray(s.sources)) return;
    const want = new URLSearchParams(location.search).get("source");
    $("source").replaceChildren(...s.sources.map((r) => new Option(String(r.name), String(r.name))));
    if (want !== null) $("source").value = want;
    $("source-box").hidden = false;
  } catch (err) { /* one source, or the view is gone: the snapshot says so */ }
}
sources().then(() => { $("snap").src = snapshotUrl(); show(); });
</script></body></html>
"""
