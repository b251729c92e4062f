"use strict";
// Shared by the chat and the dashboard: the API key, calls to the gateway, readable errors.
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
// The key lives for this tab only (sessionStorage) and is never written to the console.
keyInput.value = sessionStorage.getItem("chatbus.key") || "";
const keyListeners = [];
keyInput.onchange = () => {
  sessionStorage.setItem("chatbus.key", keyInput.value);
  keyListeners.forEach((fn) => fn());
};

function apiHeaders(extra) {
  const h = Object.assign({"Content-Type": "application/json"}, extra || {});
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}

// Every gateway error is {"error": {"message", "type", "code"}} (a few older routes send
// {"error": "text"}); this turns either, or nothing at all, into words.
function errorText(body, status) {
  const e = body && body.error;
  if (typeof e === "string" && e) return e;
  if (e && typeof e === "object") {
    const msg = e.message || e.type || "the request failed";
    const detail = [e.type, e.code || status ? "HTTP " + (e.code || status) : ""].filter(Boolean);
    return {message: msg, detail: detail.join(" · ")};
  }
  return status ? "HTTP " + status : "the request failed";
}

class ApiFailure extends Error {
  constructor(text, status) {
    const t = typeof text === "string" ? {message: text, detail: status ? "HTTP " + status : ""} : text;
    super(t.message);
    this.detail = t.detail;
    this.status = status;
  }
}

async function api(path, options) {
  let r;
  try {
    r = await fetch(path, Object.assign({headers: apiHeaders()}, options || {}));
  } catch (e) {
    throw new ApiFailure({message: "Cannot reach the gateway", detail: String(e.message || e)}, 0);
  }
  let body = null;
  try { body = await r.json(); } catch (_) { /* an empty or non-JSON body */ }
  if (!r.ok) throw new ApiFailure(errorText(body, r.status), r.status);
  return body;
}

const fmt = {
  int: (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US")),
  compact: (n) => (n == null ? "–" : Intl.NumberFormat("en-US", {notation: "compact",
    maximumFractionDigits: 1}).format(n)),
  usd: (n) => {
    if (n == null) return "–";
    if (n === 0) return "$0";
    if (Math.abs(n) < 0.01) return "$" + n.toPrecision(2);
    return "$" + n.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  },
  ms: (n) => (n == null ? "–" : n < 1000 ? Math.round(n) + " ms" : (n / 1000).toFixed(2) + " s"),
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "style") node.style.cssText = v;
    else if (k === "className") node.className = v;
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : String(c));
  return node;
}

// The two views: #chat (default) and #dashboard.
const views = {chat: $("chat-view"), dashboard: $("dashboard-view")};
const viewListeners = [];
function showView() {
  const name = location.hash === "#dashboard" ? "dashboard" : "chat";
  for (const [n, node] of Object.entries(views)) {
    node.hidden = n !== name;
    $("tab-" + n).setAttribute("aria-selected", String(n === name));
  }
  viewListeners.forEach((fn) => fn(name));
}
window.addEventListener("hashchange", showView);
