"""The agent's status page: one self-contained HTML document (inline CSS and JS, no CDN).

It polls ``status`` and ``cluster`` once a second and ``history`` every few seconds (relative URLs,
so it also works behind a path prefix) and answers the operator's first questions: which pool on
which chain, who signs under which lease generation, is every member healthy and could a standby
take over (and if not, why), are automatic decisions paused, where the epoch stands and whether
the pool's production, projected to the epoch's end, stays above the kickout thresholds, and what
moved lately. Figures older than ``STALE_SECONDS`` (a fenced node's neard no longer answers; an
agent that does not answer) are greyed and say "stale" with their age, never shown as current.
Member names link to their own agents' pages. Everything from the agent is inserted as text,
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
from near_failover.procedures.chain_view import KICKOUT_THRESHOLDS

# Figures read longer ago than this are stale (an agent loops every loop_wait, about a second).
STALE_SECONDS = 10

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
main { padding:1rem 1.5rem; max-width:1400px; }
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
.stale, .stale .num, .stale .ok, .stale .bad { color:var(--muted) !important; }
.stale .fill { background:var(--muted) !important; }
.stale-mark { display:inline-block; font-size:.75rem; font-weight:700; color:var(--warn);
  border:1px solid var(--warn); border-radius:4px; padding:0 .3rem; margin-left:.4rem; }
.ids { color:var(--muted); font-size:.95rem; } .ids b { color:var(--fg); }
.epochbar { height:10px; background:var(--bar); border-radius:5px; margin:.4rem 0 .7rem; }
.epochbar div { height:100%; border-radius:5px; background:var(--info); width:0; }
.proj { font-size:.85rem; color:var(--muted); grid-column:2 / 4; margin-top:-.4rem; }
.proj.bad { color:var(--bad); font-weight:600; }
a { color:var(--info); }
ol.timeline { list-style:none; margin:0; padding:0; background:var(--card); border:1px solid var(--line); border-radius:8px; }
ol.timeline li { padding:.45rem .8rem; border-bottom:1px solid var(--line); display:grid;
  grid-template-columns:9.5rem 1fr auto; gap:.8rem; }
#members td:first-child { white-space:nowrap; }
ol.timeline li:last-child { border-bottom:0; }
.layout { display:grid; grid-template-columns:minmax(0,3fr) minmax(0,2fr); gap:1.5rem; }
@media (max-width: 1000px) { .layout { grid-template-columns:1fr; } }
"""

SCRIPT = """
"use strict";
const THRESHOLDS = %(thresholds)s;
const STALE = %(stale)s;
const KINDS = ["blocks", "chunks", "endorsements"];
const $ = (id) => document.getElementById(id);
let lastOk = null;
let storeAnswered = false;
let polls = 0;

function text(id, value) { $(id).textContent = value; }
function el(tag, value, cls) {
  const node = document.createElement(tag);
  if (value !== undefined && value !== null) node.textContent = value;
  if (cls) node.className = cls;
  return node;
}
function cell(row, value, cls) { const td = el("td", value, cls); row.appendChild(td); return td; }
function fmtAge(seconds) {
  if (seconds === null || !isFinite(seconds)) return "unknown";
  if (seconds < 0) seconds = 0;
  return seconds < 90 ? seconds.toFixed(1) + " s ago" : Math.round(seconds / 60) + " min ago";
}
function staleMark(age) {
  const mark = el("span", "stale: " + fmtAge(age).replace(" ago", " old"), "stale-mark");
  mark.dataset.staleAge = String(Math.round(age));
  return mark;
}
function isStale(age) { return age !== null && isFinite(age) && age > STALE; }
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

function readiness(role, healthy, problems) {
  if (role === "leader") return {ready: true, label: "signs for the pool", reason: ""};
  if (role === "standby" && healthy) return {ready: true, label: "ready to take over", reason: ""};
  const why = (problems || []).join("; ") || (role === "starting" ? "the agent is still starting" : "role " + role);
  return {ready: false, label: "NOT ready", reason: why};
}

function showStatus(s) {
  document.title = s.node + ": " + s.role + " | near-failover";
  text("node", s.node);
  text("pool", s.account_id || "?");
  text("chain", s.chain_id || "?");
  const role = $("role");
  role.textContent = s.role;
  role.className = "big role-" + s.role;
  const health = $("health");
  health.textContent = s.healthy ? "healthy" : "unhealthy";
  health.className = s.healthy ? "ok" : "bad";
  $("problems").replaceChildren(...(s.problems || []).map((p) => el("li", p)));
  text("head", s.head === null ? "head unknown (neard does not answer)" : "head " + s.head);
  // The lease store's view (showCluster) wins; this agent's own view is shown until it answers.
  if (!storeAnswered) showLeader(s.leader, s.generation, "as this agent last saw it");
  text("lease", s.lease_remaining === null ? "" : "this leader's lease: " + s.lease_remaining.toFixed(1) + " s left");
  const paused = $("paused");
  paused.textContent = s.paused ? "paused" : "active";
  paused.className = "big " + (s.paused ? "warn" : "ok");
  text("paused-store", s.paused ? "no standby promotes on its own (near-failover resume)"
    : "a healthy standby promotes if the leader fails");
  const ready = readiness(s.role, s.healthy, s.problems);
  text("readiness", ready.label);
  $("readiness").className = "big " + (ready.ready ? "ok" : "bad");
  text("readiness-reason", ready.reason ? "why: " + ready.reason : (s.role === "leader" ? "" : "synced, key staged, checks pass"));
  const d = s.last_decision;
  text("last-decision", d ? "this agent's last decision (" + Math.max(0, s.updated_at - d.at).toFixed(0) + " s ago): "
    + d.kind + ": " + d.reason : "this agent has not decided yet");
  text("lastfailover", s.last_failover_seconds === null ? "this agent has not promoted its node"
    : "this agent's last took " + s.last_failover_seconds.toFixed(2) + " s");
  const age = s.production_at ? s.updated_at - s.production_at : null;
  showEpoch(s, age);
  showProduction(s.production, age, s);
}

function epochProgress(s) {
  if (!s.epoch || !s.epoch.length || s.head === null) return null;
  return Math.min(1, Math.max(0, (s.head - s.epoch.start + 1) / s.epoch.length));
}

function showEpoch(s, age) {
  const progress = epochProgress(s);
  const box = $("epoch");
  box.classList.toggle("stale", isStale(age));
  if (progress === null) {
    text("epoch-text", s.epoch && s.epoch.start ? "epoch from height " + s.epoch.start + " (its length is not known yet)"
      : "epoch unknown: this node's neard does not answer (or has not answered the validators RPC yet)");
    $("epoch-fill").style.width = "0";
    return;
  }
  $("epoch-fill").style.width = (100 * progress).toFixed(1) + "%%";
  const left = s.epoch.start + s.epoch.length - 1 - s.head;
  text("epoch-text", "epoch from height " + s.epoch.start + ", " + s.epoch.length + " blocks: "
    + (100 * progress).toFixed(1) + "%% elapsed, " + Math.max(0, left) + " blocks left");
}

// At the pool's rate so far, where each kind ends the epoch, and how many more duties it can
// miss before it falls below the kickout line (expected duties scale with the epoch elapsed).
function projection(c, limit, progress) {
  if (!c.expected || progress === null || progress <= 0) return null;
  const expectedAtEnd = c.expected / progress;
  const canMiss = Math.floor(expectedAtEnd * (1 - limit / 100) - (c.expected - c.produced));
  return {pct: 100 * c.produced / c.expected, canMiss: canMiss};
}

function showProduction(prod, age, s) {
  const box = $("production");
  const stale = isStale(age);
  box.classList.toggle("stale", stale);
  $("production-age").replaceChildren(...(stale ? [staleMark(age)] : []));
  if (!prod) {
    box.replaceChildren(el("div", "No production figures yet: this node's neard has not answered the validators RPC.", "empty"));
    return;
  }
  const progress = epochProgress(s);
  const parts = [];
  for (const kind of KINDS) {
    const c = prod[kind] || {produced: 0, expected: 0};
    const limit = THRESHOLDS[kind];
    const bar = el("div", null, "bar");
    const fill = el("div", null, "fill");
    const mark = el("div", null, "mark");
    mark.style.left = limit + "%%"; mark.title = "kickout threshold " + limit + "%%";
    bar.append(fill, mark);
    const figure = el("div", null, "num");
    figure.dataset.kind = kind;
    const proj = el("div", null, "proj");
    proj.dataset.kind = kind;
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
      const p = projection(c, limit, progress);
      if (p !== null) {
        proj.textContent = p.canMiss < 0
          ? "projected: KICKOUT, " + (-p.canMiss) + " " + kind + " over what the epoch allows"
          : "projected: " + p.pct.toFixed(1) + "%% at the epoch's end; can miss " + p.canMiss + " more " + kind + " this epoch";
        if (p.canMiss < 0 || below) proj.classList.add("bad");
      }
    }
    if (stale) { figure.classList.add("stale"); proj.classList.add("stale"); }
    parts.push(el("div", kind), bar, figure, proj);
  }
  box.replaceChildren(...parts);
}

function memberLink(m) {
  const url = m.api_url || "";
  if (!/^https?:\\/\\/[^\\s]+$/.test(url)) return el("span", m.name);
  const a = el("a", m.name);
  a.href = url.replace(/\\/+$/, "") + "/";
  a.title = "this member's own status page";
  return a;
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
  const members = (c.members || []).slice().sort((a, b) => a.name.localeCompare(b.name));
  const rows = members.map((m) => {
    const tr = document.createElement("tr");
    tr.dataset.member = m.name;
    if (s && m.name === s.node) tr.className = "me";
    const age = now - m.updated_at;
    const name = cell(tr, null);
    name.appendChild(memberLink(m));
    cell(tr, m.role + (c.leader && c.leader.member === m.name ? " (lease holder)" : ""), "role-" + m.role);
    cell(tr, m.healthy ? "healthy" : "unhealthy", m.healthy ? "ok" : "bad");
    const ready = readiness(m.role, m.healthy, m.problems);
    cell(tr, ready.label + (ready.reason ? ": " + ready.reason : ""), ready.ready ? "ok" : "bad").dataset.ready = String(ready.ready);
    cell(tr, m.head_height === null ? "?" : String(m.head_height), "num");
    cell(tr, String(m.priority), "num");
    cell(tr, m.generation === null ? "" : String(m.generation), "num");
    const rec = cell(tr, fmtAge(age), "num");
    if (isStale(age)) { tr.classList.add("stale"); rec.appendChild(staleMark(age)); }
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    cell(tr, "No member has published a record in the lease store.", "empty").colSpan = 8;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const count = (f) => members.filter(f).length;
  text("counts", members.length + " members");
  text("counts-detail", count((m) => m.healthy) + " healthy, "
    + count((m) => m.role === "standby" && m.healthy) + " standby ready, "
    + count((m) => m.role === "fenced") + " fenced");
  const failovers = members.reduce((n, m) => n + ((m.details || {}).failovers_total || 0), 0);
  text("failovers", String(failovers));
}

function showHistory(h) {
  const runs = h.runs || [];
  const items = runs.map((r) => {
    const li = document.createElement("li");
    li.dataset.run = String(r.id);
    const started = new Date(r.started);
    const seconds = r.ended ? (new Date(r.ended) - started) / 1000 : null;
    const when = started.toDateString() === new Date().toDateString() ? started.toLocaleTimeString() : started.toLocaleString();
    li.append(
      el("span", when, "sub"),
      el("span", r.kind + (r.mode ? " (" + r.mode + ")" : "") + ": "
        + (r.to ? (r.from || "?") + " \\u2192 " + r.to : (r.from || ""))),
      el("span", r.state + (seconds === null ? "" : ", " + seconds.toFixed(1) + " s"),
        r.state === "ok" ? "ok" : (r.state === "in-progress" ? "warn" : "bad")));
    return li;
  });
  if (!items.length) items.push(el("li", "Nothing in the journal yet: no move, no fence.", "empty"));
  $("history").replaceChildren(...items);
}

async function poll() {
  let status = null;
  try {
    status = await getJson("status");
    showStatus(status);
    lastOk = new Date();
    $("conn").textContent = "updated " + lastOk.toLocaleTimeString();
    $("conn").className = "";
    $("main").classList.remove("stale");
  } catch (err) {
    $("conn").textContent = "the agent does not answer (" + err.message + ")"
      + (lastOk ? "; figures below are stale, from " + lastOk.toLocaleTimeString() : "");
    $("conn").className = "down";
    $("main").classList.add("stale");
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
  if (polls++ %% 5 === 0) {
    try { showHistory(await getJson("history?limit=8")); } catch (err) { /* the next round retries */ }
  }
  setTimeout(poll, 1000);
}
poll();
"""

BODY = """
<header><h1>near-failover</h1><span class="sub">agent on <b id="node">%(node)s</b></span>
<span class="ids">pool <b id="pool">&hellip;</b> &middot; chain <b id="chain">&hellip;</b></span>
<span id="conn">connecting&hellip;</span></header>
<main id="main">
<div class="cards">
  <div class="card"><h2>This node</h2><div id="role" class="big">&hellip;</div>
    <div><span id="health"></span> &middot; <span id="head" class="sub"></span></div>
    <ul id="problems" class="problems"></ul></div>
  <div class="card"><h2>Readiness</h2><div id="readiness" class="big">&hellip;</div>
    <div class="sub" id="readiness-reason"></div></div>
  <div class="card"><h2>Leader (signs for the pool)</h2><div id="leader" class="big">&hellip;</div>
    <div class="sub" id="generation"></div><div class="sub" id="lease"></div><div class="sub" id="ttl"></div></div>
  <div class="card"><h2>Automatic decisions</h2><div id="paused" class="big">&hellip;</div>
    <div class="sub" id="paused-store"></div><div class="sub" id="last-decision"></div></div>
  <div class="card"><h2>Cluster</h2><div id="counts" class="big">&hellip;</div>
    <div class="sub" id="counts-detail"></div>
    <div class="sub">automatic failovers (all agents, since they started): <b id="failovers">&hellip;</b></div>
    <div class="sub" id="lastfailover"></div></div>
</div>
<div class="layout">
<div>
<section><h2>Members</h2><div id="cluster-error" class="bad"></div>
<table><thead><tr><th>node</th><th>role</th><th>health</th><th>could take over</th><th>head</th><th>priority</th>
<th>generation</th><th>record</th></tr></thead><tbody id="members"></tbody></table></section>
<section><h2>Epoch and pool production (against the kickout thresholds) <span id="production-age"></span></h2>
<div id="epoch" class="card"><div id="epoch-text" class="sub"></div><div class="epochbar"><div id="epoch-fill"></div></div></div>
<div id="production" class="prod"></div></section>
</div>
<section><h2>History (this node's journal)</h2><ol id="history" class="timeline"></ol></section>
</div>
</main>
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def render_page(node: str) -> tuple[str, str]:
    """The page for ``node`` and the Content-Security-Policy header that goes with it."""
    script = SCRIPT % {"thresholds": json.dumps(KICKOUT_THRESHOLDS), "stale": STALE_SECONDS}
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
