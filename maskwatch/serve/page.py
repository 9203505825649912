"""The remote view's status page: one self-contained HTML document (inline CSS and JS, no external files)."""

import html
from collections.abc import Sequence

from maskwatch.serve.routes import HTML, Reply

CSP = (
    "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>maskwatch</title>
<style>
body{margin:0;font:14px system-ui,sans-serif;background:#16181d;color:#e6e6e6}
header{padding:10px 16px;background:#20232b;display:flex;gap:12px;align-items:baseline}
h1{margin:0;font-size:20px} #source{color:#9aa4b2} .bad{color:#ff8a8e}
nav{margin-left:auto;display:flex;gap:12px;align-items:baseline} nav a{color:#9ecbff} nav form{margin:0}
nav button{font:inherit;background:none;border:1px solid #3a3f4b;color:#e6e6e6;border-radius:4px;cursor:pointer}
main{display:flex;gap:16px;padding:16px;align-items:flex-start} aside{flex:1;min-width:260px}
#view{flex:2;min-width:0} #view img{width:100%;min-height:120px;background:#000;border-radius:4px}
table{border-collapse:collapse;width:100%;margin-bottom:16px} h2{font-size:15px;margin:0 0 6px}
td{padding:3px 6px;border-bottom:1px solid #2c3039} td:first-child{color:#9aa4b2}
ul{list-style:none;margin:0;padding:0;max-height:320px;overflow:auto}
li{padding:3px 6px;margin-bottom:3px;border-left:4px solid #5a6270;background:#1d2027}
li.ev-alert{border-color:#e5484d;color:#ff8a8e} li.ev-change{border-color:#f5a524} li.ev-end{color:#9aa4b2}
#view.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}
figure{margin:0;background:#1d2027;border-radius:4px;padding:6px} figcaption{font-weight:600;margin:4px 2px}
figure table{margin:4px 0 0;font-size:13px}
</style></head><body>
<header><h1>maskwatch</h1><span id="source">{{source}}</span><span id="conn" class="bad"></span>
<nav>{{links}}</nav></header>
<main><div id="view"><img id="stream" alt="live view"></div>
<aside><h2>Status</h2><table><tbody id="status"></tbody></table><h2>Latest events</h2><ul id="events"></ul></aside>
</main>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
function link(path, extra) {  // relative; the login cookie goes with every request, no token in any URL
  const q = new URLSearchParams(extra || {});
  return path + (q.toString() ? "?" + q : "");
}
function fmt(key, v) {
  if (v === null || v === undefined) return "\\u2013";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (key === "compliance" && typeof v === "number") return (100 * v).toFixed(1) + " %";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + " " + fmt(k, x)).join(", ");
  return String(v);
}
function row(k, v) {
  const tr = document.createElement("tr"), a = document.createElement("td"), b = document.createElement("td");
  a.textContent = k.replace(/_/g, " "); b.textContent = fmt(k, v);
  if ((k === "connected" && v === false) || (k === "unmasked_total" && v > 0)) b.className = "bad";
  tr.append(a, b); return tr;
}
function item(e) {
  const li = document.createElement("li"), kind = /^[a-z_]+$/.test(String(e.event)) ? e.event : "other";
  const conf = typeof e.confidence === "number" ? " (" + e.confidence.toFixed(2) + ")" : "";
  li.className = "ev-" + kind;
  const who = tiles ? [String(e.source)] : [];
  li.textContent = [e.ts || "", ...who, kind, "track " + e.track_id, (e.label || "?") + conf].join("  ");
  return li;
}
// Several sources: one tile per source (its stream and its numbers). Browsers open about six connections per
// host, so beyond four sources the tiles show a snapshot refreshed every second instead of an MJPEG stream.
const TILE_KEYS = ["connected", "fps", "frames", "dropped", "people_now", "people_total", "alerts", "compliance"];
let tiles = null, loaded = false;
function buildTiles(rows) {
  tiles = {};
  $("view").className = "grid";
  $("view").replaceChildren(...rows.map((r) => {
    const fig = document.createElement("figure"), cap = document.createElement("figcaption");
    const img = document.createElement("img"), table = document.createElement("table");
    const body = document.createElement("tbody");
    cap.textContent = String(r.name); img.alt = "live view of " + r.name; table.append(body);
    fig.append(cap, img, table);
    tiles[r.name] = {img, body};
    return fig;
  }));
  if (loaded) startStreams();
}
function startStreams() {
  if (!tiles) { $("stream").src = link("stream.mjpg", once ? {frames: "1"} : {}); return; }
  const names = Object.keys(tiles), poll = names.length > 4;
  for (const n of names) {
    const t = tiles[n];
    t.img.src = poll || once ? link("snapshot.jpg", {source: n}) : link("stream.mjpg", {source: n});
  }
  if (poll && !once) setInterval(() => {
    for (const n of names) tiles[n].img.src = link("snapshot.jpg", {source: n, t: String(Date.now())});
  }, 1000);
}
async function refresh() {
  try {
    const s = await (await fetch(link("status"))).json();
    if (Array.isArray(s.sources)) {
      if (!tiles) buildTiles(s.sources);
      for (const r of s.sources) {
        const t = tiles[r.name];
        if (t) t.body.replaceChildren(...TILE_KEYS.filter((k) => k in r).map((k) => row(k, r[k])));
      }
    }
    const top = Object.entries(s).filter(([k]) => k !== "sources");
    $("status").replaceChildren(...top.map(([k, v]) => row(k, v)));
    if (s.source !== undefined) $("source").textContent = String(s.source);
    const ev = await (await fetch(link("events", {limit: "50"}))).json();
    $("events").replaceChildren(...ev.reverse().map(item));
    $("conn").textContent = "";
  } catch (err) { $("conn").textContent = "connection lost"; }
}
// After "load", so screenshot tools are not held by the endless stream; headless browsers get one frame.
const once = params.has("still") || /HeadlessChrome/.test(navigator.userAgent);
refresh();
setInterval(refresh, 1000);
window.addEventListener("load", () => { loaded = true; startStreams(); });
</script></body></html>
"""


LOGOUT = '<form method="post" action="logout"><button>log out</button></form>'


def status_page(source: str, *, pages: Sequence[str] = (), login: bool = False) -> Reply:
    """The page for a run watching ``source`` (shown as text: credentials already scrubbed by the caller), with
    links to the mounted ``pages`` (``/door``...) and, with ``login`` (a token is set), a log-out button."""
    links = "".join(f'<a href=".{html.escape(p)}">{html.escape(p[1:])}</a>' for p in pages)
    links += LOGOUT if login else ""
    body = PAGE.replace("{{source}}", html.escape(source)).replace("{{links}}", links).encode()
    return Reply(body, ctype=HTML, headers={"Content-Security-Policy": CSP})
