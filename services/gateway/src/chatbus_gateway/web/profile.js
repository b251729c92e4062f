"use strict";
// Beside the chat: what memory keeps about the user (their profile), refreshed after each
// reply, each fact editable and removable in place; "Forget me" deletes the user everywhere.
const profile = (() => {
  const userInput = $("user"), box = $("profile-box"), list = $("facts"), note = $("profile-note");
  const count = $("profile-count"), addForm = $("fact-add"), forgetBtn = $("forget-user");
  const earlier = $("earlier"), pastList = $("history");
  // Memory reads a turn after its reply is sent: look again a few times, sooner first (~16 s).
  const AFTER_REPLY_MS = [250, 500, 1000, 2000, 4000, 8000];
  let shown = {facts: {}, history: []};  // the profile last read
  let generation = 0;  // bumped by every read or write: an older answer is not drawn over a newer
  let editing = null;  // the fact being edited: a refresh does not redraw under the typing
  const forgotten = [];

  // The user id: this browser's own, kept like the session; empty means anonymous.
  const stored = localStorage.getItem("chatbus.user");
  userInput.value = stored !== null ? stored : "web-user-" + crypto.randomUUID().slice(0, 8);
  localStorage.setItem("chatbus.user", userInput.value);
  userInput.onchange = () => {
    userInput.value = userInput.value.trim();
    localStorage.setItem("chatbus.user", userInput.value);
    editing = null;
    load();
  };
  if (matchMedia("(max-width: 760px)").matches) box.open = false;  // the chat first on a phone

  const user = () => userInput.value.trim();
  const profilePath = (u) => `/api/users/${encodeURIComponent(u)}/profile`;
  const label = (key) => key.replace(/_/g, " ");
  const when = (t) => (t ? new Date(t * 1000).toLocaleString(undefined,
    {dateStyle: "medium", timeStyle: "short"}) : "");

  function say(text, bad) {
    note.textContent = text;
    note.classList.toggle("bad", Boolean(bad));
  }

  function draw(body) {
    shown = body;
    const facts = Object.entries(body.facts || {}).sort(([a], [b]) => a.localeCompare(b));
    count.textContent = facts.length ? String(facts.length) : "";
    if (editing && !(editing in shown.facts)) editing = null;
    if (!editing) list.replaceChildren(...facts.map(([key, fact]) => row(key, fact)));
    say(facts.length ? "" : "Nothing yet. Tell the assistant your name, where you live, your plan…");
    const past = (body.history || []).slice(-10).reverse();
    earlier.hidden = !past.length;
    pastList.replaceChildren(...past.map((c) => el("li", {title: `until ${when(c.until)}`},
      el("span", {className: "fact-key"}, label(c.key)), " ", el("s", {}, c.value),
      c.replaced_by ? ` → ${c.replaced_by}` : " (removed)")));
  }

  function row(key, fact) {
    const how = fact.source === "edited" ? "edited" : "said";
    const li = el("li", {className: "fact", "data-key": key, title: `${how} ${when(fact.updated_at)}`},
      el("span", {className: "fact-key"}, label(key)));
    if (editing === key) {
      li.append(editor(key, fact.value));
      return li;
    }
    const edit = el("button", {type: "button", className: "link", "aria-label": `Edit ${label(key)}`}, "Edit");
    const remove = el("button", {type: "button", className: "link",
                                 "aria-label": `Remove ${label(key)}`}, "Remove");
    edit.onclick = () => {
      editing = key;
      list.replaceChildren(...Object.entries(shown.facts)
        .sort(([a], [b]) => a.localeCompare(b)).map(([k, f]) => row(k, f)));
      list.querySelector(`[data-key="${CSS.escape(key)}"] input`).focus();
    };
    remove.onclick = () => save({[key]: null});
    li.append(el("span", {className: "fact-value"}, fact.value),
              el("span", {className: "fact-actions"}, edit, remove));
    return li;
  }

  function editor(key, value) {
    const input = el("input", {value, maxlength: "500", required: "", size: "10",
                               "aria-label": `New value of ${label(key)}`});
    const cancel = el("button", {type: "button", className: "link"}, "Cancel");
    const form = el("form", {className: "fact-edit"}, input,
                    el("button", {type: "submit"}, "Save"), cancel);
    const stop = () => { editing = null; draw(shown); };
    cancel.onclick = stop;
    input.onkeydown = (ev) => { if (ev.key === "Escape") stop(); };
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      editing = null;
      save({[key]: text});
    };
    return form;
  }

  // Reads the profile and draws it unless something newer started meanwhile; null on failure.
  async function read(mine) {
    const u = user();
    try {
      const body = await api(profilePath(u));
      if (mine === generation && u === user()) draw(body);
      return body;
    } catch (e) {
      if (mine === generation) say(`Cannot read the profile: ${e.message}`, true);
      return null;
    }
  }

  function anonymous() {
    const none = !user();
    addForm.hidden = forgetBtn.hidden = none;
    if (none) {
      list.replaceChildren();
      earlier.hidden = true;
      count.textContent = "";
      say("No user id: nothing is remembered about you across sessions.");
    }
    return none;
  }

  async function load() {
    const mine = ++generation;
    if (!anonymous()) await read(mine);
  }

  // After a reply: read again until the profile changes (memory stores the turn first).
  async function afterReply() {
    if (anonymous()) return;
    const mine = ++generation, before = shown.updated_at;
    for (const wait of AFTER_REPLY_MS) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (mine !== generation) return;
      const body = await read(mine);
      if (!body || body.updated_at !== before) return;
    }
  }

  async function save(facts) {
    const u = user(), mine = ++generation;
    if (!u) return false;
    try {
      const body = await api(profilePath(u), {method: "PATCH", body: JSON.stringify(facts)});
      if (mine === generation && u === user()) draw(body);
      return true;
    } catch (e) {
      say(`Not saved: ${e.message}`, true);
      if (e.detail) note.append(el("small", {}, e.detail));
      return false;
    }
  }

  addForm.onsubmit = async (ev) => {
    ev.preventDefault();
    const name = $("fact-name"), value = $("fact-value");
    const key = name.value.trim().toLowerCase().replace(/[\s-]+/g, "_"), text = value.value.trim();
    if (!key || !text) return;
    if (await save({[key]: text})) {
      name.value = value.value = "";
      name.focus();
    }
  };

  forgetBtn.onclick = async () => {
    const u = user(), mine = ++generation;
    if (!u) return;
    let body;
    try {
      body = await api(`/api/users/${encodeURIComponent(u)}`, {method: "DELETE"});
    } catch (e) { say(`Could not forget: ${e.message}`, true); return; }
    editing = null;
    if (mine === generation) draw({facts: {}, history: []});
    // 202: some owner has not confirmed yet; its status says when all have (bounded)
    for (const wait of AFTER_REPLY_MS) {
      if (body.status === "done" || mine !== generation) break;
      say("Forgetting… not every service has confirmed yet.");
      await new Promise((resolve) => setTimeout(resolve, wait));
      try { body = await api(body.status_url); } catch (e) { break; }
    }
    if (mine !== generation) return;
    say(body.status === "done" ? "Everything remembered about you was forgotten."
                               : "Still forgetting: some services have not confirmed yet.");
    forgotten.forEach((fn) => fn(body));
  };

  keyListeners.push(load);  // another key may be another tenant: another profile
  load();
  return {user, afterReply, onForget: (fn) => forgotten.push(fn)};
})();
