// Rosey's dashboard: no framework, no build step, no outside resources (the page's
// Content-Security-Policy allows none). Everything shown comes from the bot's HTTP API.
// Text a plugin or a user chose (names, errors, log lines, violation details) is only ever
// set with textContent, never parsed as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "rosey.token";
  const HISTORY = 60; // samples kept per chart (2 minutes at one refresh every 2 s)
  const REFRESH_MS = 2000;
  const LOG_POLL_MS = 1500;
  const DESTRUCTIVE = new Set(["stop", "restart", "disable", "reload"]);
  const SVG = "http://www.w3.org/2000/svg";

  const query = new URLSearchParams(location.search);
  const token = query.get("token") || sessionStorage.getItem(TOKEN_KEY) || "";
  if (query.get("token")) sessionStorage.setItem(TOKEN_KEY, token);

  const byName = new Map(); // name -> {status, cpu: [], mem: [], ui: {...}}
  let actions = ["start", "stop", "restart", "enable", "disable"];
  let lastEventId = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function banner(text) {
    const node = $("banner");
    node.textContent = text || "";
    node.hidden = !text;
  }

  async function api(method, path, extra) {
    const headers = Object.assign({ Authorization: "Bearer " + token }, extra || {});
    const response = await fetch(path, { method, headers, cache: "no-store" });
    if (response.status === 401) {
      banner("The token was refused: open the dashboard with the URL the bot printed at " +
        "start-up (it changes each time the bot starts).");
      throw new Error("unauthorized");
    }
    return response.json();
  }

  // --- formatting ------------------------------------------------------------------------

  function duration(seconds) {
    if (!seconds) return "–";
    const s = Math.floor(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function sparkline(svg, values, ceiling) {
    const top = Math.max(ceiling || 0, ...values, 1e-9);
    const points = values.map((v, i) => {
      const x = 100 - ((values.length - 1 - i) / (HISTORY - 1)) * 100; // newest at the right
      return x.toFixed(1) + "," + (30 - (v / top) * 28 - 1).toFixed(1);
    });
    svg.firstChild.setAttribute("points", points.join(" "));
  }

  // --- one card per plugin -----------------------------------------------------------------

  function chart(label) {
    const figure = el("figure", "chart");
    const caption = el("figcaption");
    caption.append(label + " ");
    const value = el("span", "value", "–");
    caption.append(value);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label + " over the last two minutes");
    svg.append(document.createElementNS(SVG, "polyline"));
    figure.append(caption, svg);
    return { figure, value, svg };
  }

  function fact(dl, label) {
    const dd = el("dd", null, "–");
    dl.append(el("dt", null, label), dd);
    return dd;
  }

  function card(name) {
    const root = el("article", "card");
    root.dataset.plugin = name;
    const head = el("div", "head");
    const kind = el("span", "kind");
    const state = el("span", "state");
    head.append(el("span", "name", name), kind, state);
    const facts = el("dl", "facts");
    const ui = { root, kind, state };
    ui.uptime = fact(facts, "uptime");
    ui.restarts = fact(facts, "restarts");
    ui.crashes = fact(facts, "crashes");
    ui.violations = fact(facts, "violations");
    const charts = el("div", "charts");
    ui.cpu = chart("CPU");
    ui.mem = chart("memory");
    charts.append(ui.cpu.figure, ui.mem.figure);
    ui.why = el("p", "why");
    ui.why.hidden = true;
    ui.actions = el("div", "actions");
    ui.msg = el("p", "msg");
    ui.logs = el("details", "logs");
    ui.logs.append(el("summary", null, "log"), el("pre"));
    ui.logs.addEventListener("toggle", () => { if (ui.logs.open) followLog(name); });
    root.append(head, facts, charts, ui.why, ui.actions, ui.msg, ui.logs);
    return ui;
  }

  function buttons(entry) {
    const box = entry.ui.actions;
    box.replaceChildren();
    for (const action of actions) {
      const button = el("button", DESTRUCTIVE.has(action) ? "danger" : null, action);
      button.type = "button";
      button.dataset.action = action;
      button.addEventListener("click", () => act(entry, action, button));
      box.append(button);
    }
  }

  function allowed(action, s) {
    const up = ["running", "starting", "unhealthy"].includes(s.state);
    switch (action) {
      case "start": return s.enabled && !up && s.state !== "stopping";
      case "stop": return up || s.state === "crashed";
      case "restart": return s.enabled;
      case "enable": return !s.enabled;
      case "disable": return s.enabled;
      default: return true;
    }
  }

  function show(entry) {
    const s = entry.status;
    const ui = entry.ui;
    ui.root.dataset.state = s.state;
    ui.kind.textContent = s.kind || "plugin";
    ui.state.textContent = s.state;
    ui.uptime.textContent = s.state === "running" ? duration(s.uptime_seconds) : "–";
    ui.restarts.textContent = String(s.restart_count);
    ui.crashes.textContent = String(s.crash_count);
    ui.violations.textContent = String(s.violations || 0);
    const stats = s.stats || {};
    ui.cpu.value.textContent = stats.running ? stats.cpu_percent.toFixed(1) + " %" : "–";
    ui.mem.value.textContent = stats.running ? stats.memory_mb.toFixed(1) + " MiB" : "–";
    sparkline(ui.cpu.svg, entry.cpu, 100);
    sparkline(ui.mem.svg, entry.mem, s.limits ? s.limits.memory_mb : 0);
    let why = s.state === "running" ? "" : (s.last_error || "");
    if (!why && s.state !== "running" && entry.reason) why = entry.reason;
    if (s.next_restart_in) why += (why ? "\n" : "") + "next restart in " + s.next_restart_in.toFixed(1) + " s";
    ui.why.textContent = why;
    ui.why.hidden = !why;
    for (const button of ui.actions.children) {
      if (!button.dataset.busy) button.disabled = !allowed(button.dataset.action, s);
    }
  }

  // A STATUS fetched before a state event arrived is older than that event: it must not put
  // the card back. ``seq`` counts a plugin's events; a reply is used only if none came since
  // its request was sent (the event's own refresh brings the newer STATUS).
  const seqOf = (name) => (byName.has(name) ? byName.get(name).seq : 0);

  function update(status, sample, asked) {
    let entry = byName.get(status.name);
    if (entry && asked !== undefined && entry.seq !== asked) return;
    if (!entry) {
      entry = { status, cpu: [], mem: [], ui: card(status.name), reason: "", seq: 0 };
      byName.set(status.name, entry);
      buttons(entry);
      const list = $("plugins");
      const after = [...list.children].find((c) => c.dataset.plugin > status.name);
      list.insertBefore(entry.ui.root, after || null);
    }
    entry.status = status;
    if (sample) {
      const stats = status.stats || {};
      entry.cpu.push(stats.running ? stats.cpu_percent : 0);
      entry.mem.push(stats.running ? stats.memory_mb : 0);
      if (entry.cpu.length > HISTORY) entry.cpu.shift();
      if (entry.mem.length > HISTORY) entry.mem.shift();
    }
    show(entry);
  }

  function summary() {
    const all = [...byName.values()].map((e) => e.status);
    const running = all.filter((s) => s.state === "running").length;
    $("summary").textContent = running + " of " + all.length + " running";
  }

  // --- dependency graph: each plugin, its dependents indented below ---------------------------

  function graph() {
    const all = [...byName.values()].map((e) => e.status).sort((a, b) => a.name < b.name ? -1 : 1);
    const known = new Map(all.map((s) => [s.name, s]));
    const item = (s, path) => {
      const li = el("li");
      const dot = el("span", "dot");
      dot.dataset.state = s.state;
      li.append(dot, s.name);
      const below = (s.dependents || []).filter((d) => known.has(d) && !path.has(d));
      // Only a plugin's direct dependents (those that list it), so each edge shows once.
      const direct = below.filter((d) => (known.get(d).dependencies || []).includes(s.name));
      if (direct.length) {
        const ul = el("ul");
        for (const d of direct) ul.append(item(known.get(d), new Set([...path, d])));
        li.append(ul);
      }
      return li;
    };
    const roots = all.filter((s) => !(s.dependencies || []).some((d) => known.has(d)));
    const tree = $("deps");
    tree.replaceChildren(...roots.map((s) => item(s, new Set([s.name]))));
    const shown = new Set(roots.map((s) => s.name));
    for (const s of all) {
      if (!shown.has(s.name) && !(s.dependencies || []).every((d) => known.has(d))) {
        tree.append(item(s, new Set([s.name])));
      }
    }
  }

  // --- refresh, actions, logs --------------------------------------------------------------

  async function refresh() {
    try {
      const asked = new Map([...byName].map(([name, entry]) => [name, entry.seq]));
      const body = await api("GET", "/api/plugins");
      if (!body.ok) return;
      for (const status of body.result.plugins) update(status, true, asked.get(status.name));
      summary();
      graph();
    } catch (error) {
      if (error.message !== "unauthorized") $("live").dataset.live = "no";
    }
  }

  async function refreshOne(name) {
    try {
      const asked = seqOf(name);
      const body = await api("GET", "/api/plugins/" + encodeURIComponent(name));
      if (body.ok) update(body.result, false, asked);
      summary();
      graph();
    } catch (error) { /* the periodic refresh catches up */ }
  }

  async function act(entry, action, button) {
    const name = entry.status.name;
    if (DESTRUCTIVE.has(action)) {
      const dependents = entry.status.dependents || [];
      const also = dependents.length ? " (and first its dependents: " + dependents.join(", ") + ")" : "";
      if (!window.confirm(action + " " + name + also + "?")) return;
    }
    entry.ui.msg.textContent = "";
    button.dataset.busy = "1";
    button.disabled = true;
    try {
      const path = "/api/plugins/" + encodeURIComponent(name) + "/" + action;
      const asked = seqOf(name);
      const body = await api("POST", path);
      if (body.ok) update(body.result, false, asked);
      else entry.ui.msg.textContent = action + ": " + body.error.message;
    } catch (error) {
      entry.ui.msg.textContent = action + ": " + error.message;
    } finally {
      delete button.dataset.busy;
      show(entry);
    }
  }

  async function followLog(name) {
    const entry = byName.get(name);
    const pre = entry.ui.logs.querySelector("pre");
    let cursor = null;
    let lines = [];
    while (entry.ui.logs.open) {
      try {
        let path = "/api/plugins/" + encodeURIComponent(name) + "/logs?lines=200";
        if (cursor) path += "&cursor=" + encodeURIComponent(cursor);
        const body = await api("GET", path);
        if (body.ok) {
          cursor = body.result.cursor;
          lines = lines.concat(body.result.lines).slice(-200);
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = lines.join("\n");
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        } else if (!lines.length) {
          pre.textContent = "(the log cannot be read: " + body.error.message + ")";
        }
      } catch (error) {
        if (!lines.length) pre.textContent = "(the log cannot be read: " + error.message + ")";
      }
      await new Promise((resolve) => setTimeout(resolve, LOG_POLL_MS));
    }
  }

  // --- live events (server-sent events read with fetch, so the token goes in a header) ------

  function violation(body) {
    $("no-violations").hidden = true;
    const li = el("li");
    const when = new Date((body.timestamp || 0) * 1000).toLocaleTimeString();
    li.append(el("span", "when", when + " "), el("strong", null, String(body.plugin)),
      " " + String(body.kind) + " " + String(body.subject || "") + ": " + String(body.detail || ""));
    const list = $("violations");
    list.prepend(li);
    while (list.children.length > 50) list.lastChild.remove();
  }

  function onEvent(kind, data) {
    if (kind === "gap") { refresh(); return; }
    const body = JSON.parse(data);
    if (kind === "state") {
      const entry = byName.get(body.plugin);
      if (entry) {
        // Shown at once from the event; the plugin's full STATUS follows.
        entry.seq += 1;
        entry.status = Object.assign({}, entry.status, { state: body.state });
        entry.reason = body.reason || "";
        show(entry);
      }
      refreshOne(body.plugin);
    } else if (kind === "violation") {
      violation(body);
      if (byName.has(body.plugin)) refreshOne(body.plugin);
    }
  }

  async function stream() {
    const decoder = new TextDecoder();
    for (;;) {
      try {
        const headers = { Authorization: "Bearer " + token, Accept: "text/event-stream" };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const response = await fetch("/api/events", { headers, cache: "no-store" });
        if (response.status === 401) { banner("The token was refused."); return; }
        $("live").dataset.live = "yes";
        $("live").textContent = "live";
        if (!lastEventId) refresh();
        const reader = response.body.getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let kind = "message", data = "", id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) id = line.slice(4);
              else if (line.startsWith("event: ")) kind = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (id) lastEventId = id;
            if (data) onEvent(kind, data);
          }
        }
      } catch (error) { /* reconnect below */ }
      $("live").dataset.live = "no";
      $("live").textContent = "reconnecting…";
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async function start() {
    if (!token) {
      banner("No token: open the dashboard with the URL the bot printed at start-up.");
      return;
    }
    try {
      const spec = await api("GET", "/api/openapi.json");
      const act = spec.paths["/api/plugins/{name}/{action}"].post.parameters[1].schema.enum;
      if (Array.isArray(act) && act.length) actions = act;
    } catch (error) { /* the built-in list stays */ }
    await refresh();
    stream();
    setInterval(refresh, REFRESH_MS);
  }

  start();
})();
