"use strict";
// Charts drawn as SVG by the page itself (no library, no build step). Every bar carries its
// value in data-value and a <title>, so a pointer shows it and a test can read it.
const charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) node.setAttribute(k, v);
    for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  // A round axis top at least v, whose four grid steps are 1, 2, 2.5 or 5 times a power of
  // ten (whole numbers when `whole`).
  function niceMax(v, whole) {
    if (!(v > 0)) return whole ? 4 : 1;
    const raw = v / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = 10 * p;
    for (const m of [1, 2, 2.5, 5]) if (m * p >= raw) { step = m * p; break; }
    if (whole) step = Math.max(1, Math.ceil(step));
    return 4 * step;
  }
  const W = 760, PAD = {l: 52, r: 58, t: 12, b: 26};

  function frame(h, maxL, fmtL, maxR, fmtR) {
    const g = s("g");
    for (let i = 0; i <= 4; i++) {
      const y = PAD.t + (h - PAD.t - PAD.b) * (1 - i / 4);
      g.append(s("line", {x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "grid"}));
      g.append(s("text", {x: PAD.l - 6, y: y + 4, "text-anchor": "end"}, fmtL(maxL * i / 4)));
      if (fmtR) g.append(s("text", {x: W - PAD.r + 6, y: y + 4}, fmtR(maxR * i / 4)));
    }
    return g;
  }

  // Bars (left axis) with an optional line (right axis) over the same labels.
  function barsAndLine(host, o) {
    const h = o.height || 240, n = o.labels.length;
    const maxB = niceMax(Math.max(0, ...o.bars), true), maxL = niceMax(Math.max(0, ...(o.line || [0])));
    const plotW = W - PAD.l - PAD.r, plotH = h - PAD.t - PAD.b, step = plotW / Math.max(1, n);
    const svg = s("svg", {viewBox: `0 0 ${W} ${h}`, role: "img", "aria-label": o.title || ""});
    svg.append(frame(h, maxB, o.fmtBar, maxL, o.line ? o.fmtLine : null));
    const every = Math.ceil(n / 14);
    o.labels.forEach((label, i) => {
      const v = o.bars[i], bh = plotH * v / maxB, x = PAD.l + i * step + step * 0.18;
      const tip = `${label}: ${o.fmtBar(v)} ${o.barName}` + (o.line ? ` · ${o.fmtLine(o.line[i])} ${o.lineName}` : "");
      svg.append(s("rect", {x, y: PAD.t + plotH - bh, width: step * 0.64, height: Math.max(bh, v > 0 ? 1 : 0),
                            rx: 3, class: "bar", "data-label": label, "data-value": v}, s("title", {}, tip)));
      if (i % every === 0) {
        svg.append(s("text", {x: PAD.l + i * step + step / 2, y: h - 8, "text-anchor": "middle"},
                     o.fmtLabel ? o.fmtLabel(label) : label));
      }
    });
    if (o.line) {
      const pts = o.line.map((v, i) => [PAD.l + i * step + step / 2, PAD.t + plotH * (1 - v / maxL)]);
      svg.append(s("polyline", {points: pts.map((p) => p.join(",")).join(" "), class: "line"}));
      pts.forEach(([x, y], i) => svg.append(s("circle", {cx: x, cy: y, r: 3.5, class: "dot",
        "data-label": o.labels[i], "data-value": o.line[i]}, s("title", {}, `${o.labels[i]}: ${o.fmtLine(o.line[i])}`))));
    }
    host.replaceChildren(svg, legend([["var(--accent)", o.barName], o.line ? ["var(--bar2)", o.lineName] : null]));
  }

  // Stacked bars per minute: fine (accent), refused 4xx (amber), errors 5xx (red).
  function stacked(host, o) {
    const h = o.height || 190, n = o.rows.length;
    const max = niceMax(Math.max(0, ...o.rows.map((r) => r.requests)), true);
    const plotW = W - PAD.l - PAD.r, plotH = h - PAD.t - PAD.b, step = plotW / Math.max(1, n);
    const svg = s("svg", {viewBox: `0 0 ${W} ${h}`, role: "img", "aria-label": o.title || ""});
    svg.append(frame(h, max, (v) => fmt.compact(v)));
    o.rows.forEach((r, i) => {
      const x = PAD.l + i * step + 1, w = Math.max(1, step - 2);
      let y = PAD.t + plotH;
      const g = s("g", {"data-minute": r.minute, "data-requests": r.requests, "data-errors": r.errors},
                  s("title", {}, `${r.minute.slice(11, 16)} UTC: ${r.requests} requests, ${r.errors} errors, ${r.refused} refused`));
      for (const [v, cls] of [[r.requests - r.errors - r.refused, "bar"], [r.refused, "ref"], [r.errors, "err"]]) {
        if (v <= 0) continue;
        const bh = plotH * v / max; y -= bh;
        g.append(s("rect", {x, y, width: w, height: bh, class: cls}));
      }
      svg.append(g);
      if (i % 10 === 0) svg.append(s("text", {x: x + w / 2, y: h - 8, "text-anchor": "middle"}, r.minute.slice(11, 16)));
    });
    host.replaceChildren(svg, legend([["var(--accent)", "answered"], ["var(--warn)", "refused (4xx)"],
                                      ["var(--bad)", "errors (5xx)"]]));
  }

  function legend(items) {
    return el("div", {className: "legend"}, items.filter(Boolean).map(([c, t]) =>
      el("span", {}, el("i", {style: `background:${c}`}), t)));
  }

  // Horizontal bars as HTML rows: [{name, value, text}] scaled to the largest.
  function rows(host, items, empty) {
    if (!items.length) { host.replaceChildren(el("p", {className: "empty"}, empty || "Nothing yet.")); return; }
    const max = Math.max(...items.map((i) => i.value), 0) || 1;
    host.replaceChildren(el("div", {className: "rows"}, items.map((i) =>
      el("div", {className: "row", "data-name": i.name, "data-value": i.value},
         el("span", {className: "name", title: i.name}, i.name),
         el("span", {className: "track"}, el("span", {className: "fill", style: `width:${(100 * i.value / max).toFixed(1)}%`})),
         el("span", {className: "num"}, i.text)))));
  }
  return {barsAndLine, stacked, rows, niceMax};
})();
