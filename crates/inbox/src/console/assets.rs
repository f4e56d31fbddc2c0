//! The console's style sheet and script, compiled into the binary: the console
//! fetches nothing from anywhere else.

/// Light and dark, readable at phone width.
pub const CSS: &str = r#"
:root { --bg: #fff; --fg: #1d2127; --muted: #5d6673; --line: #d8dde3; --card: #f4f6f8;
  --accent: #2358c5; --ok: #137333; --warn: #a05a00; --bad: #b3261e; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15181c; --fg: #e6e9ed; --muted: #9aa4b0; --line: #333a42; --card: #1f2429;
    --accent: #7aa7ff; --ok: #6fd08a; --warn: #f0b35c; --bad: #ff8a80; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; padding: .75rem 1rem; border-bottom: 1px solid var(--line); }
header .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
nav a { margin-right: 1rem; }
main { padding: 1rem; max-width: 72rem; margin: 0 auto; }
a { color: var(--accent); }
h1 { font-size: 1.4rem; margin: .25rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .75rem; }
.card { display: flex; flex-direction: column; padding: .75rem; background: var(--card); border: 1px solid var(--line); border-radius: 6px; color: var(--fg); text-decoration: none; }
.card .label { color: var(--muted); font-size: .85rem; }
.card .value { font-size: 1.5rem; font-weight: 600; }
.attention { padding: .75rem; border-left: 4px solid var(--bad); background: var(--card); }
.error { padding: .75rem; border-left: 4px solid var(--bad); background: var(--card); }
.notice { padding: .75rem; border-left: 4px solid var(--ok); background: var(--card); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; }
.fields th { width: 12rem; }
.error-text { color: var(--muted); overflow-wrap: anywhere; }
.state, .outcome, .tag { display: inline-block; padding: 0 .4rem; border-radius: 4px; font-size: .85rem; border: 1px solid var(--line); }
.state.done, .outcome.delivered { color: var(--ok); }
.state.pending, .state.in_flight { color: var(--warn); }
.state.dead, .outcome.failed, .outcome.set-aside { color: var(--bad); }
.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin-bottom: 1rem; }
.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
input, select, button { font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: .3rem .5rem; }
button { cursor: pointer; background: var(--card); }
button.danger { color: var(--bad); }
.actions { display: flex; gap: .75rem; flex-wrap: wrap; margin: 1rem 0; }
form.inline { display: inline; margin-left: .5rem; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
pre.payload { background: var(--card); border: 1px solid var(--line); padding: .75rem; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.chart svg { width: 100%; height: 10rem; background: var(--card); border: 1px solid var(--line); }
.chart polyline { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
.chart .received { stroke: var(--accent); color: var(--accent); }
.chart .finished { stroke: var(--ok); color: var(--ok); }
.chart .depth { stroke: var(--warn); color: var(--warn); }
.key::before { content: "■ "; }
.empty, .meta, .totals { color: var(--muted); }
.live-news { padding: .5rem .75rem; background: var(--card); border: 1px solid var(--line); }
@media (max-width: 40rem) { main { padding: .75rem; } .fields th { width: auto; } }
"#;

/// Live updates: polls the JSON endpoints every few seconds and changes the page in
/// place. Without it every page still reads correctly.
/// The tab's icon (an inbox tray), so browsers stop asking for `/favicon.ico`.
pub const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path fill="#2563eb" d="M1 9l2-7h10l2 7v5H1zm2 0h3l1 2h2l1-2h3L11.5 3h-7z"/></svg>"##;

pub const JS: &str = r#"
"use strict";
(function () {
  const live = document.body.dataset.live;
  const every = 2000;
  async function json(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    if (!response.ok) throw new Error(response.status);
    return response.json();
  }
  function setState(element, state) {
    if (!element || element.textContent === state) return;
    element.textContent = state;
    element.className = "state " + state;
  }
  async function overview() {
    const stats = await json("/api/stats");
    for (const key of ["pending", "in_flight", "done", "dead", "open", "oldest"]) {
      const element = document.querySelector('[data-stat="' + key + '"]');
      if (element) element.textContent = stats[key];
    }
  }
  async function list() {
    const rows = Array.from(document.querySelectorAll("tr[data-id]"));
    const news = document.querySelector(".live-news");
    const after = news ? news.dataset.newest : (rows.length ? rows[0].dataset.id : "0");
    const ids = rows.map((row) => row.dataset.id).join(",");
    const latest = await json("/api/latest?after=" + encodeURIComponent(after) + "&ids=" + ids);
    for (const row of rows) {
      const known = latest.states[row.dataset.id];
      if (!known) continue;
      setState(row.querySelector("[data-state]"), known.state);
      const attempts = row.querySelector("[data-attempts]");
      if (attempts) attempts.textContent = known.attempts;
    }
    if (news && latest.newer > 0) {
      news.hidden = false;
      news.innerHTML = "";
      const link = document.createElement("a");
      link.href = location.pathname + location.search;
      link.textContent = latest.newer + (latest.newer > 100 ? "+" : "") + " new event(s): show them";
      news.appendChild(link);
    }
  }
  async function event() {
    const facts = document.querySelector("[data-event]");
    if (!facts) return;
    const current = await json("/api/events/" + facts.dataset.event);
    setState(facts.querySelector("[data-state]"), current.state);
    const attempts = facts.querySelector("[data-attempts]");
    if (attempts) attempts.textContent = current.attempts;
    const history = document.querySelector("[data-history]");
    if (history && history.dataset.history !== current.version) {
      const holder = document.createElement("div");
      holder.innerHTML = current.history;
      history.replaceWith(holder.firstElementChild);
    }
  }
  const update = { overview, list, event }[live];
  if (!update) return;
  async function tick() {
    try { await update(); } catch (error) { /* the next tick tries again */ }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
})();
"#;
