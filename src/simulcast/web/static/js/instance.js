// One instance's controls page (v1 dialect): element state polled every 2 s while it runs,
// ingest URL and key per input, a LIVE/OFFLINE toggle and destination states per output, a
// switch's input, the overrides editor, restart and stop.
"use strict";

(() => {
  const S = window.Simulcast;
  const { el, api, attempt } = S;
  const root = document.getElementById("instance-root");
  const id = root.dataset.instanceId;
  const base = `/api/v1/instances/${encodeURIComponent(id)}`;
  const POLL_MS = 2000;
  const cards = new Map(); // element id -> {update(state)}
  let names = new Map(); // destination id -> name
  let configuration = null;
  let current = null;
  let pollTimer = 0;

  function setBadge(node, state, text) {
    node.dataset.state = state;
    node.textContent = text ?? state;
  }

  function summary(e) {
    const s = e.state || {};
    switch (e.type) {
      case "inputstream":
        return s.live ? `live ${[s.codec, s.width && `${s.width}×${s.height}`, s.fps && `${s.fps} fps`,
          s.bitrateKbps && `${s.bitrateKbps} kb/s`].filter(Boolean).join(", ")}` : "waiting for a publisher";
      case "outputstream":
        return `${s.live ? "LIVE" : "OFFLINE"}, ${(s.destinations || []).length} destination(s)`;
      case "switch":
        return `on ${s.input}`;
      case "failover":
        return s.active ? "failover active" : "input passing through";
      default:
        return Object.entries(s).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ") || "—";
    }
  }

  // -- element cards (built once, updated in place so a revealed key or focus survives) ------
  function inputCard(e) {
    const serverId = `server-${e.id}`;
    const keyId = `key-${e.id}`;
    const server = el("code", { id: serverId });
    const key = el("code", { id: keyId, class: "secret", "aria-live": "polite" }, "••••••••••••");
    const liveBadge = el("span", { class: "badge live-badge", dataset: { state: "idle" } }, "idle");
    const figures = el("p", { class: "muted small" });
    const reveal = el("button", { type: "button", class: "small", "aria-pressed": "false" }, "Reveal");
    let secret = "";
    const showKey = () => {
      const shown = reveal.getAttribute("aria-pressed") === "true";
      key.textContent = shown ? secret : "••••••••••••";
    };
    reveal.addEventListener("click", () => {
      reveal.setAttribute("aria-pressed", String(reveal.getAttribute("aria-pressed") !== "true"));
      reveal.textContent = reveal.getAttribute("aria-pressed") === "true" ? "Hide" : "Reveal";
      showKey();
    });
    const copy = el("button", { type: "button", class: "small", "aria-label": `Copy the stream key of ${e.id}`,
      on: { click: () => S.copyText(secret) } }, "Copy");
    const title = `${e.id}-title`;
    document.getElementById("inputs").append(
      el("section", { class: "card", "aria-labelledby": title, dataset: { elementId: e.id } },
        el("h2", { id: title }, `Input ${e.id} `, liveBadge),
        el("dl", { class: "fields" },
          el("dt", {}, "Server"),
          el("dd", {}, server, " ", el("button", { type: "button", class: "small", dataset: { copyFrom: serverId },
            "aria-label": `Copy the server URL of ${e.id}` }, "Copy")),
          el("dt", {}, "Stream key"),
          el("dd", {}, key, " ", reveal, " ", copy),
        ),
        figures),
    );
    return (state) => {
      secret = state.streamkey || "";
      const rtmp = state.ingest?.rtmp || "";
      server.textContent = secret && rtmp.endsWith(secret) ? rtmp.slice(0, -secret.length) : rtmp;
      showKey();
      setBadge(liveBadge, state.live ? "live" : "idle");
      figures.textContent = summary({ type: "inputstream", state });
    };
  }

  function outputCard(e) {
    const title = `${e.id}-title`;
    const toggle = el("button", { type: "button", class: "toggle", "aria-pressed": "false" }, "Go LIVE");
    const liveBadge = el("span", { class: "badge", dataset: { state: "offline" } }, "OFFLINE");
    const tbody = el("tbody");
    let live = false;
    toggle.addEventListener("click", async () => {
      toggle.disabled = true;
      const updated = await attempt(
        () => api("PUT", `${base}/outputs`, { [e.id]: live ? "OFFLINE" : "LIVE" }),
        live ? `${e.id} is OFFLINE` : `${e.id} is LIVE`,
      );
      toggle.disabled = false;
      if (updated) render(updated);
    });
    document.getElementById("outputs").append(
      el("section", { class: "card", "aria-labelledby": title, dataset: { elementId: e.id } },
        el("div", { class: "title-row" }, el("h2", { id: title }, `Output ${e.id}`), liveBadge, toggle),
        el("div", { class: "table-wrap" },
          el("table", { class: "table" },
            el("caption", { class: "sr-only" }, `Destinations of ${e.id}`),
            el("thead", {}, el("tr", {}, ...["Destination", "State", "Sent", "Last error"].map((h) => el("th", { scope: "col" }, h)))),
            tbody))),
    );
    return (state) => {
      live = Boolean(state.live);
      toggle.setAttribute("aria-pressed", String(live));
      toggle.textContent = live ? "Go OFFLINE" : "Go LIVE";
      toggle.disabled = current?.status !== "RUNNING";
      setBadge(liveBadge, live ? "live" : "offline", live ? "LIVE" : "OFFLINE");
      const rows = state.destinations || [];
      tbody.replaceChildren(
        ...rows.map((d) => el("tr", { dataset: { destinationId: d.id } },
          el("td", {}, names.get(d.id) || d.id),
          el("td", {}, el("span", { class: "badge", dataset: { state: d.state } }, d.state)),
          el("td", { class: "num" }, S.bytes(d.bytesSent)),
          el("td", { class: "small" }, d.lastError || "—"))),
      );
      if (!rows.length) tbody.append(el("tr", {}, el("td", { colspan: "4", class: "muted" },
        "No destinations: set this output's destinations in the overrides below.")));
    };
  }

  function switchCard(e) {
    const title = `${e.id}-title`;
    const selectId = `${e.id}-input`;
    const conf = configuration?.elements.find((c) => c.id === e.id);
    const select = el("select", { id: selectId },
      ...(conf?.inputs || []).map((i) => el("option", { value: i }, i)));
    select.addEventListener("change", async () => {
      const saved = await attempt(() => api("PATCH", `${base}/overrides`, { [e.id]: { input: select.value } }),
        `${e.id} now on ${select.value}`);
      if (saved) showOverrides(saved);
      refresh();
    });
    document.getElementById("switches").append(
      el("section", { class: "card", "aria-labelledby": title, dataset: { elementId: e.id } },
        el("h2", { id: title }, `Switch ${e.id}`),
        el("label", { for: selectId }, "Forward this input"), " ", select),
    );
    return (state) => {
      if (document.activeElement !== select && state.input) select.value = state.input;
    };
  }

  const builders = { inputstream: inputCard, outputstream: outputCard, switch: switchCard };

  function render(inst) {
    current = inst;
    document.getElementById("instance-name").textContent = inst.name || inst.id;
    const status = inst.status.toLowerCase();
    setBadge(document.getElementById("instance-status"), status === "running" ? "live" : status, status);
    document.getElementById("instance-status").dataset.status = inst.status;
    const outputsLive = inst.outputs === "LIVE";
    setBadge(document.getElementById("instance-outputs"), outputsLive ? "live" : "offline", `outputs ${inst.outputs}`);
    const stopped = inst.status === "STOPPED";
    document.getElementById("stop").disabled = stopped;
    document.getElementById("stop").textContent = inst.status === "QUEUED" ? "Cancel" : "Stop";
    document.getElementById("restart").disabled = inst.status !== "RUNNING";
    const reason = document.getElementById("stop-reason");
    reason.hidden = !stopped;
    reason.textContent = stopped ? `Stopped ${S.when(inst.stoppedAt)}${inst.stopReason ? ` (${inst.stopReason})` : ""}.` : "";

    S.fillTable("elements", inst.state.elements, (e) => el("tr", { dataset: { elementId: e.id } },
      el("th", { scope: "row" }, e.id), el("td", {}, e.type), el("td", {}, summary(e))));
    for (const e of inst.state.elements) {
      if (!cards.has(e.id) && builders[e.type]) cards.set(e.id, builders[e.type](e));
      cards.get(e.id)?.(e.state || {});
    }
  }

  async function refresh() {
    clearTimeout(pollTimer);
    const inst = await attempt(() => api("GET", base));
    if (inst) render(inst);
    // One instance is cheap to poll; only a running (or queued) one changes.
    if (!inst || inst.status !== "STOPPED") pollTimer = setTimeout(refresh, POLL_MS);
  }

  // -- overrides -----------------------------------------------------------------------------
  const editor = document.getElementById("overrides-json");
  const problem = document.getElementById("overrides-error");
  function showOverrides(overrides) {
    editor.value = JSON.stringify(overrides, null, 2);
  }

  document.getElementById("overrides-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    let body;
    try {
      body = JSON.parse(editor.value || "{}");
    } catch (err) {
      problem.textContent = `Not valid JSON: ${err.message}`;
      return;
    }
    try {
      showOverrides(await api("PATCH", `${base}/overrides`, body));
      S.toast("Overrides saved");
      refresh();
    } catch (err) {
      problem.textContent = err.message || String(err);
    }
  });

  // -- restart / stop ------------------------------------------------------------------------
  document.getElementById("restart").addEventListener("click", async () => {
    if (!window.confirm("Restart this instance? Inputs reconnect with the same keys.")) return;
    await attempt(() => api("POST", `${base}/restart`), "Instance restarting");
    refresh();
  });
  document.getElementById("stop").addEventListener("click", async () => {
    if (!window.confirm("Stop this instance?")) return;
    await attempt(() => api("DELETE", base), "Instance stopped");
    refresh();
  });

  async function start() {
    const inst = await attempt(() => api("GET", base));
    if (!inst) return;
    const [config, dests, overrides] = await Promise.all([
      attempt(() => api("GET", `/api/v1/configurations/${encodeURIComponent(inst.configurationId)}`)),
      attempt(() => api("GET", "/api/v1/destinations")),
      attempt(() => api("GET", `${base}/overrides`)),
    ]);
    configuration = config || null;
    names = new Map((dests?.destinations || []).map((d) => [d.id, d.name]));
    if (overrides) showOverrides(overrides);
    render(inst);
    refresh();
  }

  start();
})();
