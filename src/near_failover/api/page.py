"""The agent's status page: one self-contained HTML document (inline CSS and JS, no CDN).

It polls ``status`` and ``cluster`` (relative URLs, so it also works behind a path prefix) once a
second and answers the operator's first questions: who signs, under which lease generation, is
every member healthy and at which head, are automatic decisions paused, and how does this epoch's
production stand against the kickout thresholds. Everything from the agent is inserted as text,
never as HTML. The Content-Security-Policy pins the inline script and style by hash, so the page
cannot load anything from elsewhere even by mistake.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

# neard's kickout thresholds (neard-behaviour §5: block_producer_, chunk_producer_ and
# chunk_validator_only_kickout_threshold): below 80% of expected blocks or chunks, or below 70% of
# expected endorsements, the pool is kicked out at the end of the epoch.
KICKOUT_THRESHOLDS = {"blocks": 80, "chunks": 80, "endorsements": 70}

STYLE = """
:root { --bg:#f6f7f9; --card:#fff; --fg:#1b1f24; --muted:#5b6470; --line:#d9dde3;
  --ok:#1a7f37; --bad:#c62828; --warn:#9a6700; --info:#0b5cad; --bar:#e6e9ee; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#121418; --card:#1b1f26; --fg:#e6e9ee; --muted:#9aa3ae; --line:#2d333c;
    --ok:#4ac26b; --bad:#ff6b6b; --warn:#e3b341; --info:#58a6ff; --bar:#2d333c; } }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  background:var(--bg); color:var(--fg); }
header { display:flex; align-items:baseline; gap:1rem; flex-wrap:wrap; padding:1rem 1.5rem;
  border-bottom:1px solid var(--line); background:var(--card); }
header h1 { font-size:1.25rem; margin:0; }
#conn { margin-left:auto; font-size:.9rem; color:var(--muted); }
#conn.down { color:var(--bad); font-weight:600; }
main { padding:1rem 1.5rem; max-width:1100px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(220px,1fr)); gap:1rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:.9rem 1rem; }
.card h2, section h2 { font-size:.8rem; text-transform:uppercase; letter-spacing:.05em;
  color:var(--muted); margin:0 0 .4rem; font-weight:600; }
.big { font-size:1.6rem; font-weight:700; }
.sub { color:var(--muted); font-size:.9rem; }
.role-leader { color:var(--ok); } .role-standby { color:var(--info); }
.role-fenced { color:var(--bad); } .role-starting { color:var(--warn); }
.ok { color:var(--ok); } .bad { color:var(--bad); } .warn { color:var(--warn); }
ul.problems { margin:.3rem 0 0; padding-left:1.1rem; color:var(--bad); }
section { margin-top:1.5rem; }
table { width:100%; border-collapse:collapse; background:var(--card);
  border:1px solid var(--line); border-radius:8px; overflow:hidden; }
th, td { text-align:left; padding:.5rem .7rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:.8rem; color:var(--muted); font-weight:600; }
td.num { font-variant-numeric:tabular-nums; }
tr.me td:first-child { font-weight:700; }
.prod { display:grid; grid-template-columns:8rem 1fr 20rem; gap:.6rem 1rem; align-items:center;
  background:var(--card); border:1px solid var(--line); border-radius:8px; padding:1rem; }
.bar { position:relative; height:14px; background:var(--bar); border-radius:7px; overflow:visible; }
.fill { height:100%; border-radius:7px; background:var(--ok); width:0; }
.fill.below { background:var(--bad); }
.mark { position:absolute; top:-4px; bottom:-4px; width:2px; background:var(--fg); opacity:.7; }
.empty { color:var(--muted); padding:.6rem 0; }
"""

SCRIPT = """
"use strict";
const THRESHOLDS = %(thresholds)s;
const $ = (id) => document.getElementById(id);
let lastOk = null;
let storeAnswered = false;

function text(id, value) { $(id).textContent = value; }
function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function fmtAge(seconds) {
  if (seconds === null || !isFinite(seconds)) return "unknown";
  if (seconds < 0) seconds = 0;
  return seconds < 90 ? seconds.toFixed(1) + " s ago" : Math.round(seconds / 60) + " min ago";
}
async function getJson(path) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 3000);
  try {
    const r = await fetch(path, {signal: ctl.signal, cache: "no-store"});
    const body = await r.json();
    if (!r.ok) throw new Error(body.message || ("HTTP " + r.status));
    return body;
  } finally { clearTimeout(timer); }
}

function showLeader(name, generation, note) {
  text("leader", name === null ? "none" : name);
  $("leader").className = "big " + (name === null ? "bad" : "");
  text("generation", (generation === null ? "no lease" : "generation " + generation) + (note ? " (" + note + ")" : ""));
}

function showStatus(s) {
  document.title = s.node + ": " + s.role + " | near-failover";
  text("node", s.node);
  const role = $("role");
  role.textContent = s.role;
  role.className = "big role-" + s.role;
  const health = $("health");
  health.textContent = s.healthy ? "healthy" : "unhealthy";
  health.className = s.healthy ? "ok" : "bad";
  const list = $("problems");
  list.replaceChildren(...(s.problems || []).map((p) => {
    const li = document.createElement("li"); li.textContent = p; return li;
  }));
  text("head", s.head === null ? "head unknown" : "head " + s.head);
  // The lease store's view (showCluster) wins; this agent's own view is shown until it answers.
  if (!storeAnswered) showLeader(s.leader, s.generation, "as this agent last saw it");
  text("lease", s.lease_remaining === null ? "" : "this leader's lease: " + s.lease_remaining.toFixed(1) + " s left");
  const paused = $("paused");
  paused.textContent = s.paused ? "paused" : "active";
  paused.className = "big " + (s.paused ? "warn" : "ok");
  text("paused-store", s.paused ? "no standby promotes on its own (near-failover resume)"
    : "a healthy standby promotes if the leader fails");
  text("failovers", String(s.failovers_total));
  text("lastfailover", s.last_failover_seconds === null ? "no automatic failover yet"
    : "last took " + s.last_failover_seconds.toFixed(2) + " s");
  showProduction(s.production);
}

function showProduction(prod) {
  const box = $("production");
  if (!prod) {
    const p = document.createElement("div");
    p.className = "empty";
    p.textContent = "No production figures yet: this node's neard has not answered the validators RPC.";
    box.replaceChildren(p);
    return;
  }
  const parts = [];
  for (const kind of ["blocks", "chunks", "endorsements"]) {
    const c = prod[kind] || {produced: 0, expected: 0};
    const limit = THRESHOLDS[kind];
    const name = document.createElement("div");
    name.textContent = kind;
    const bar = document.createElement("div"); bar.className = "bar";
    const fill = document.createElement("div"); fill.className = "fill";
    const mark = document.createElement("div"); mark.className = "mark";
    mark.style.left = limit + "%%"; mark.title = "kickout threshold " + limit + "%%";
    bar.append(fill, mark);
    const figure = document.createElement("div"); figure.className = "num";
    figure.dataset.kind = kind;
    if (!c.expected) {
      figure.textContent = c.produced + " / 0 (none expected yet)";
    } else {
      const pct = 100 * c.produced / c.expected;
      fill.style.width = Math.min(100, pct) + "%%";
      const below = pct < limit;
      if (below) fill.classList.add("below");
      figure.textContent = c.produced + " / " + c.expected + " = " + pct.toFixed(1) + "%% "
        + (below ? "(BELOW the " : "(kickout below ") + limit + "%%)";
      figure.className = "num " + (below ? "bad" : "ok");
    }
    parts.push(name, bar, figure);
  }
  box.replaceChildren(...parts);
}

function showCluster(c, s) {
  if (c.leader) {
    showLeader(c.leader.member, c.leader.generation, "");
    text("ttl", c.leader.ttl_left === null ? "" : "in the lease store: " + c.leader.ttl_left.toFixed(1) + " s left");
  } else {
    showLeader(null, null, "");
    text("ttl", "no one holds the lease: nobody signs under it");
  }
  const body = $("members");
  const now = s ? s.updated_at : Date.now() / 1000;
  const rows = (c.members || []).slice().sort((a, b) => a.name.localeCompare(b.name)).map((m) => {
    const tr = document.createElement("tr");
    tr.dataset.member = m.name;
    if (s && m.name === s.node) tr.className = "me";
    cell(tr, m.name);
    cell(tr, m.role + (c.leader && c.leader.member === m.name ? " (lease holder)" : ""), "role-" + m.role);
    cell(tr, m.healthy ? "healthy" : "unhealthy", m.healthy ? "ok" : "bad");
    cell(tr, m.head_height === null ? "?" : String(m.head_height), "num");
    cell(tr, String(m.priority), "num");
    cell(tr, m.generation === null ? "" : String(m.generation), "num");
    cell(tr, fmtAge(now - m.updated_at), "num");
    cell(tr, (m.problems || []).join("; "), (m.problems || []).length ? "bad" : "");
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(tr, "No member has published a record in the lease store.", "empty");
    td.colSpan = 8;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

async function poll() {
  let status = null;
  try {
    status = await getJson("status");
    showStatus(status);
    lastOk = new Date();
    $("conn").textContent = "updated " + lastOk.toLocaleTimeString();
    $("conn").className = "";
  } catch (err) {
    $("conn").textContent = "the agent does not answer (" + err.message + ")"
      + (lastOk ? "; figures below are from " + lastOk.toLocaleTimeString() : "");
    $("conn").className = "down";
  }
  try {
    showCluster(await getJson("cluster"), status);
    storeAnswered = true;
    text("cluster-error", "");
  } catch (err) {
    storeAnswered = false;
    if (status) showLeader(status.leader, status.generation, "as this agent last saw it");
    text("cluster-error", "The lease store did not answer: " + err.message);
  }
  setTimeout(poll, 1000);
}
poll();
"""

BODY = """
<header><h1>near-failover</h1><span class="sub">agent on <b id="node">%(node)s</b></span>
<span id="conn">connecting&hellip;</span></header>
<main>
<div class="cards">
  <div class="card"><h2>This node</h2><div id="role" class="big">&hellip;</div>
    <div><span id="health"></span> &middot; <span id="head" class="sub"></span></div>
    <ul id="problems" class="problems"></ul></div>
  <div class="card"><h2>Leader (signs for the pool)</h2><div id="leader" class="big">&hellip;</div>
    <div class="sub" id="generation"></div><div class="sub" id="lease"></div><div class="sub" id="ttl"></div></div>
  <div class="card"><h2>Automatic decisions</h2><div id="paused" class="big">&hellip;</div>
    <div class="sub" id="paused-store"></div></div>
  <div class="card"><h2>Automatic failovers</h2><div id="failovers" class="big">&hellip;</div>
    <div class="sub" id="lastfailover"></div></div>
</div>
<section><h2>Members</h2><div id="cluster-error" class="bad"></div>
<table><thead><tr><th>node</th><th>role</th><th>health</th><th>head</th><th>priority</th>
<th>generation</th><th>record</th><th>problems</th></tr></thead><tbody id="members"></tbody></table></section>
<section><h2>Pool production this epoch (against the kickout thresholds)</h2>
<div id="production" class="prod"></div></section>
</main>
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def render_page(node: str) -> tuple[str, str]:
    """The page for ``node`` and the Content-Security-Policy header that goes with it."""
    script = SCRIPT % {"thresholds": json.dumps(KICKOUT_THRESHOLDS)}
    document = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{html.escape(node)} | near-failover</title><link rel=\"icon\" href=\"data:,\">"
        f"<style>{STYLE}</style></head><body>{BODY % {'node': html.escape(node)}}"
        f"<script>{script}</script></body></html>\n"
    )
    policy = (
        f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(STYLE)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return document, policy
