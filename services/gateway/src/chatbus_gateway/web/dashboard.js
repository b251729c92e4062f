"use strict";
// The dashboard view: usage (per day, agent, model), budgets, this gateway's traffic and
// latency, agents and dead letters, read from the gateway's APIs with the key in the header.
(() => {
  const REFRESH_MS = 15000;
  let timer = null, busy = false;

  function dayList(from, to) {
    const out = [], d = new Date(from + "T00:00:00Z"), end = new Date(to + "T00:00:00Z");
    for (; d <= end; d.setUTCDate(d.getUTCDate() + 1)) out.push(d.toISOString().slice(0, 10));
    return out;
  }
  function isoDay(offset) {
    const d = new Date(); d.setUTCDate(d.getUTCDate() + offset); return d.toISOString().slice(0, 10);
  }
  const set = (id, text) => { $(id).textContent = text; };
  // Each part of the page loads on its own: one failing API leaves the others drawn.
  async function part(name, path, draw) {
    try { draw(await api(path)); return null; } catch (e) { return {name, e}; }
  }

  function drawDays(rep) {
    const byDay = Object.fromEntries(rep.rows.map((r) => [r.key, r]));
    const labels = dayList(rep.from, rep.to);
    charts.barsAndLine($("chart-days"), {
      title: "tokens and cost per day", labels,
      bars: labels.map((d) => (byDay[d] || {}).tokens || 0),
      line: labels.map((d) => (byDay[d] || {}).cost_usd || 0),
      barName: "tokens", lineName: "cost", fmtBar: fmt.compact, fmtLine: fmt.usd,
      fmtLabel: (d) => new Date(d + "T00:00:00Z").toLocaleDateString("en-US", {month: "short", day: "numeric", timeZone: "UTC"}),
    });
    set("kpi-tokens", fmt.compact(rep.total.tokens));
    set("kpi-tokens-sub", `${fmt.int(rep.total.requests)} requests · ${fmt.int(rep.total.cache_hits)} cached`);
    set("kpi-cost", fmt.usd(rep.total.cost_usd));
    set("kpi-cost-sub", rep.forecast_month_usd != null ? `month forecast ${fmt.usd(rep.forecast_month_usd)}` : `${rep.from} – ${rep.to}`);
  }
  function drawGroup(host) {
    return (rep) => charts.rows($(host), rep.rows.slice().sort((a, b) => b.cost_usd - a.cost_usd || b.tokens - a.tokens)
      .map((r) => ({name: r.key, value: r.tokens, text: `${fmt.compact(r.tokens)} tok · ${fmt.usd(r.cost_usd)}`})),
      "No usage in this range.");
  }
  function drawStats(st) {
    charts.stacked($("chart-minutes"), {title: "requests per minute", rows: st.per_minute});
    const total = st.per_minute.reduce((a, m) => ({r: a.r + m.requests, e: a.e + m.errors, f: a.f + m.refused}), {r: 0, e: 0, f: 0});
    set("kpi-requests", fmt.int(total.r));
    const peak = Math.max(0, ...st.per_minute.map((m) => m.requests));
    set("kpi-requests-sub", `peak ${peak}/min`);
    set("kpi-errors", fmt.int(total.e));
    set("kpi-errors-sub", total.r ? `${(100 * total.e / total.r).toFixed(1)}% · ${total.f} refused` : "no traffic");
    $("kpi-errors").parentElement.classList.toggle("alert", total.e > 0);
    const host = $("latency");
    if (!st.agents.length) { host.replaceChildren(el("p", {className: "empty"}, "No chat in the last hour.")); return; }
    const max = Math.max(...st.agents.map((a) => a.p95_ms || 0)) || 1;
    host.replaceChildren(el("div", {className: "rows"}, st.agents.map((a) =>
      el("div", {className: "row", "data-name": a.agent, "data-p50": a.p50_ms, "data-p95": a.p95_ms},
         el("span", {className: "name"}, a.agent),
         el("span", {className: "track", title: `p50 ${fmt.ms(a.p50_ms)} · p95 ${fmt.ms(a.p95_ms)}`},
            el("span", {className: "fill p95", style: `width:${(100 * (a.p95_ms || 0) / max).toFixed(1)}%`}),
            el("span", {className: "fill", style: `width:${(100 * (a.p50_ms || 0) / max).toFixed(1)}%`})),
         el("span", {className: "num"}, `${fmt.ms(a.p50_ms)} · ${fmt.ms(a.p95_ms)}`)))));
  }
  function drawBudgets(body) {
    const host = $("budgets");
    if (!body.budgets.length) { host.replaceChildren(el("p", {className: "empty"}, "No budget is set (BUDGETS_JSON).")); return; }
    const amount = (b, v) => (b.unit === "usd" ? fmt.usd(v) : fmt.compact(v) + " tokens");
    const who = (b) => (b.scope === "global" ? "all traffic" : `${b.scope} ${b.id || b.tenant || "(each)"}`);
    const limits = (b) => (b.soft != null ? `soft ${amount(b, b.soft)} · ` : "") + `hard ${amount(b, b.hard)}`;
    host.replaceChildren(el("div", {className: "rows"}, body.budgets.map((b) => {
      const title = `${b.period === "daily" ? "Today" : "This month"} · ${who(b)}`;
      if (b.used == null) {
        return el("div", {className: "budget", "data-name": b.label, "data-state": b.state},
          el("div", {className: "head"}, el("b", {}, title), el("span", {className: "muted"}, "kept per " + b.scope)),
          el("small", {className: "muted"}, limits(b)));
      }
      const pct = Math.min(100, 100 * b.used / b.hard);
      const pill = {ok: "ok", soft: "past soft: cheaper model", hard: "hard limit: no model calls"}[b.state];
      return el("div", {className: "budget", "data-name": b.label, "data-used": b.used, "data-state": b.state},
        el("div", {className: "head"}, el("b", {}, title), el("span", {className: "pill " + b.state}, pill)),
        el("span", {className: "track", title: b.label},
           el("span", {className: "fill " + b.state, style: `width:${Math.max(pct, b.used > 0 ? 1 : 0).toFixed(1)}%`}),
           b.soft != null ? el("span", {className: "mark", style: `left:${(100 * b.soft / b.hard).toFixed(1)}%`}) : ""),
        el("small", {className: "muted"}, `${amount(b, b.used)} used (${pct < 1 && pct > 0 ? "<1" : pct.toFixed(0)}%) · ${limits(b)}`));
    })));
  }
  function drawAgents(body) {
    const up = body.agents.reduce((n, a) => n + a.instances, 0);
    set("kpi-instances", fmt.int(up));
    set("kpi-instances-sub", `${body.agents.length} agent${body.agents.length === 1 ? "" : "s"}`);
    const host = $("agents");
    if (!body.agents.length) { host.replaceChildren(el("p", {className: "empty"}, "No agent is running.")); return; }
    host.replaceChildren(el("div", {className: "rows"}, body.agents.map((a) =>
      el("div", {className: "row", "data-name": a.id, "data-instances": a.instances},
         el("span", {className: "name", title: a.description || ""}, a.label || a.id),
         el("span", {className: "dots"}, Array.from({length: a.instances}, () => el("i")),
            Array.from({length: a.draining}, () => el("i", {className: "draining", title: "draining"}))),
         el("span", {className: "num"}, `${a.instances} up` + (a.model ? ` · ${a.model}` : ""))))));
  }
  function drawDead(body) {
    const n = body.dead_letters.length;
    set("kpi-dead", n >= 100 ? "100+" : String(n));
    set("kpi-dead-sub", n ? "re-drive: POST …/redrive" : "none waiting");
    $("kpi-dead").parentElement.classList.toggle("alert", n > 0);
    const bySubject = {};
    body.dead_letters.forEach((d) => { bySubject[d.subject] = (bySubject[d.subject] || 0) + 1; });
    charts.rows($("dead"), Object.entries(bySubject).map(([name, v]) => ({name, value: v, text: String(v)})),
                "No dead letter: every message was handled.");
  }

  async function refresh() {
    if (busy) return;
    busy = true; $("refresh").disabled = true;
    const days = Number($("range").value), from = isoDay(1 - days), to = isoDay(0);
    const q = `from=${from}&to=${to}`;
    const failed = (await Promise.all([
      part("usage", `/api/usage?${q}&group_by=day`, drawDays),
      part("usage by agent", `/api/usage?${q}&group_by=agent`, drawGroup("by-agent")),
      part("usage by model", `/api/usage?${q}&group_by=model`, drawGroup("by-model")),
      part("traffic", "/api/stats", drawStats),
      part("budgets", "/api/budgets", drawBudgets),
      part("agents", "/api/agents", drawAgents),
      part("dead letters", "/api/admin/dead-letters", drawDead),
    ])).filter(Boolean);
    for (const f of failed) {
      if (f.name === "dead letters" && f.e.status === 403) {
        set("kpi-dead", "–"); set("kpi-dead-sub", "admin key only");
        $("dead").replaceChildren(el("p", {className: "empty"}, "Dead letters are for the admin key."));
      }
    }
    const shown = failed.filter((f) => !(f.name === "dead letters" && f.e.status === 403));
    $("dash-error").hidden = !shown.length;
    $("dash-error").textContent = shown.map((f) => `${f.name}: ${f.e.message}`).join(" · ");
    set("updated", "updated " + new Date().toLocaleTimeString());
    busy = false; $("refresh").disabled = false;
  }

  function onView(name) {
    clearInterval(timer); timer = null;
    if (name !== "dashboard") return;
    refresh();
    timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  }
  $("refresh").onclick = refresh;
  $("range").onchange = refresh;
  keyListeners.push(() => { if (location.hash === "#dashboard") refresh(); });
  viewListeners.push(onView);
  showView();
})();
