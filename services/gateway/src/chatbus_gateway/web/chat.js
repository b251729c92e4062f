"use strict";
// The chat view: pick an agent, stream its replies (SSE), see handoffs, forget the session.
// The user's id and profile live in profile.js.
(() => {
  const log = $("log"), agentSel = $("agent"), session = $("session"), sendBtn = $("send");
  session.value = localStorage.getItem("chatbus.session") || "web-" + crypto.randomUUID().slice(0, 8);
  localStorage.setItem("chatbus.session", session.value);
  session.onchange = () => { localStorage.setItem("chatbus.session", session.value); loadHistory(); };
  agentSel.onchange = () => localStorage.setItem("chatbus.agent", agentSel.value);

  function scroll() { log.scrollTop = log.scrollHeight; }
  function bubble(cls, text, meta) {
    const body = el("span", {className: "body"}, text);
    const div = el("div", {className: "msg " + cls}, meta ? el("div", {className: "meta"}, meta) : "", body);
    log.append(div); scroll();
    return {div, body};
  }
  function showError(err) {
    const message = err && err.message ? err.message : String(err);
    const div = el("div", {className: "error", role: "alert"}, message);
    if (err && err.detail) div.append(el("small", {}, err.detail));
    log.append(div); scroll();
  }

  async function loadAgents() {
    agentSel.disabled = true;
    agentSel.replaceChildren(el("option", {}, "Loading agents…"));
    let body;
    try { body = await api("/api/agents"); } catch (e) {
      agentSel.replaceChildren(el("option", {}, "No agents"));
      showError(e); return;
    }
    const current = localStorage.getItem("chatbus.agent") || "support";
    agentSel.replaceChildren(...body.agents.map((a) =>
      el("option", {value: a.id, title: a.description || ""},
         `${a.label || a.id} · ${a.instances} running`)));
    if (body.agents.some((a) => a.id === current)) agentSel.value = current;
    agentSel.disabled = !body.agents.length;
    if (!body.agents.length) {
      agentSel.replaceChildren(el("option", {}, "No agents"));
      showError({message: "No agent is running.", detail: "Start one, then reload the page."});
    }
  }

  function welcome() {
    log.replaceChildren(el("div", {className: "notice"},
      "Pick an agent and say hello. Replies stream in as they are written."));
  }
  // The session's earlier turns, so a reload shows the conversation it continues.
  async function loadHistory() {
    let body;
    try {
      body = await api(`/api/sessions/${encodeURIComponent(session.value)}/messages?limit=50`);
    } catch (e) { welcome(); return; }  // memory off or down: the chat still works
    const turns = body.messages.filter((m) => m.role === "user" || m.role === "assistant");
    if (!turns.length) { welcome(); return; }
    log.replaceChildren();
    turns.forEach((m) => bubble(m.role === "user" ? "user" : "bot", m.content,
                                m.role === "user" ? "" : m.agent || ""));
  }

  // Reads an SSE body and calls onEvent(name, data) for each event.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const event = (raw.match(/^event: (.*)$/m) || [])[1] || "message";
        const data = JSON.parse((raw.match(/^data: (.*)$/m) || [])[1] || "null");
        onEvent(event, data);
      }
    }
  }

  async function send(message) {
    const agent = agentSel.value;
    log.querySelectorAll(".notice").forEach((n) => n.remove());
    bubble("user", message);
    const out = bubble("bot", "", agent);
    out.div.classList.add("pending");
    out.body.replaceChildren(el("span", {className: "typing", "aria-label": "waiting for the reply"},
                                el("span"), el("span"), el("span")));
    let failed = null, got = false;
    try {
      let r;
      try {
        r = await fetch("/api/chat/" + encodeURIComponent(agent), {
          method: "POST", headers: apiHeaders({"Accept": "text/event-stream"}),
          body: JSON.stringify({message, session_id: session.value, user_id: profile.user() || undefined}),
        });
      } catch (e) { throw new ApiFailure({message: "Cannot reach the gateway", detail: String(e)}, 0); }
      if (!r.ok || !(r.headers.get("Content-Type") || "").includes("text/event-stream")) {
        let body = null;
        try { body = await r.json(); } catch (_) { /* not JSON */ }
        throw new ApiFailure(errorText(body, r.status), r.status);
      }
      await readEvents(r, (event, data) => {
        if (event === "chunk") {
          if (!got) { out.body.textContent = ""; got = true; }
          out.body.textContent += data.delta; scroll();
          out.div.dataset.chunks = Number(out.div.dataset.chunks || 0) + 1;
        } else if (event === "done") {
          got = true;
          out.body.textContent = data.reply;
          const meta = out.div.querySelector(".meta");
          meta.replaceChildren(data.agent);
          if (data.handoff_from) {
            meta.append(" ", el("span", {className: "handoff"}, `← handed over from ${data.handoff_from}`));
          }
          if (data.cached) meta.append(" · cached");
          if (data.degraded) meta.append(" · " + data.degraded);
          if ([...agentSel.options].some((o) => o.value === data.agent)) {
            agentSel.value = data.agent;
            localStorage.setItem("chatbus.agent", data.agent);
          }
        } else if (event === "error") {
          failed = new ApiFailure(errorText(data, 0), (data && data.error && data.error.code) || 0);
        }
      });
    } catch (e) { failed = e; }
    out.div.classList.remove("pending");
    if (failed) {
      if (!got || !out.body.textContent) out.div.remove();
      showError(failed);
    } else {
      profile.afterReply();  // what the user just said may be a fact memory keeps
    }
  }

  $("form").onsubmit = async (ev) => {
    ev.preventDefault();
    const text = $("message").value.trim();
    if (!text || sendBtn.disabled) return;
    $("message").value = "";
    sendBtn.disabled = true; sendBtn.textContent = "Sending…";
    try { await send(text); } finally {
      sendBtn.disabled = false; sendBtn.textContent = "Send"; $("message").focus();
    }
  };
  $("message").onkeydown = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("form").requestSubmit(); }
  };
  $("forget").onclick = async () => {
    try {
      await api("/api/sessions/" + encodeURIComponent(session.value), {method: "DELETE"});
      log.replaceChildren(el("div", {className: "notice"}, "This conversation was forgotten."));
    } catch (e) { showError(e); }
  };
  profile.onForget((body) => {
    if ((body.sessions || []).includes(session.value)) {
      log.replaceChildren(el("div", {className: "notice"}, "This conversation was forgotten with you."));
    }
  });
  keyListeners.push(loadAgents, loadHistory);
  loadAgents();
  loadHistory();
})();
