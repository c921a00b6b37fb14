// One stream: ingest details, destinations with live state, limits, protection, HLS preview.
"use strict";

(() => {
  const S = window.Simulcast;
  const { el, api, attempt } = S;
  const root = document.getElementById("stream-root");
  const streamId = Number(root.dataset.streamId);
  const base = `/api/streams/${streamId}`;
  let stream = null;
  let keyShown = false;
  const cells = new Map(); // destination id -> {state, bitrate, error}
  const ready = new Set(); // self-hosted destinations whose playlist is ready

  // -- loading and rendering ---------------------------------------------------------------
  async function load() {
    try {
      stream = await api("GET", base);
    } catch (err) {
      S.toast(err.message, true);
      if (err.status === 404) document.getElementById("stream-label").textContent = "Stream not found";
      return;
    }
    render();
  }

  function render() {
    document.title = `${stream.label} · Simulcast`;
    document.getElementById("stream-label").textContent = stream.label;
    S.stateBadge(document.getElementById("stream-state"), stream.status);
    document.getElementById("stop").disabled = stream.status !== "active";
    document.getElementById("protecting").hidden = !stream.protecting;
    const lock = document.getElementById("lock-note");
    lock.hidden = !stream.locked;
    lock.textContent = stream.locked ? `Locked (${stream.lockReason}): change or clear the limits to publish again.` : "";
    showKey();
    renderDestinations();
    if (!document.getElementById("limits-form").contains(document.activeElement)) {
      document.getElementById("max-sats").value = stream.limits.maxSats ?? "";
      document.getElementById("max-minutes").value = stream.limits.maxDurationMinutes ?? "";
    }
    if (!document.getElementById("protection-form").contains(document.activeElement)) {
      document.getElementById("protection-enabled").checked = stream.protection.enabled;
      document.getElementById("grace-seconds").value = stream.protection.graceSeconds;
    }
    preview.sync();
  }

  function showKey() {
    const code = document.getElementById("stream-key");
    code.textContent = keyShown && stream ? stream.streamKey : "••••••••••••";
    const button = document.getElementById("reveal-key");
    button.textContent = keyShown ? "Hide" : "Reveal";
    button.setAttribute("aria-pressed", String(keyShown));
  }

  function renderDestinations() {
    const tbody = document.querySelector("#dest-table tbody");
    tbody.replaceChildren();
    cells.clear();
    for (const d of stream.destinations) {
      const state = el("span", { class: "badge" });
      S.stateBadge(state, d.state);
      const bitrate = el("td", { class: "num" }, d.bitrateKbps ? `${d.bitrateKbps} kb/s` : "—");
      const error = el("td", { class: "error-text" }, d.lastError || "");
      cells.set(d.id, { state, bitrate, error });
      const toggle = el(
        "button",
        { type: "button", class: "small", on: { click: () => setEnabled(d, !d.enabled) } },
        d.enabled ? "Disable" : "Enable",
      );
      const remove = el(
        "button",
        { type: "button", class: "small danger", on: { click: () => removeDestination(d) } },
        "Delete",
      );
      tbody.append(
        el(
          "tr",
          { dataset: { destinationId: String(d.id), type: d.type } },
          el("td", {}, d.platform),
          el("td", { class: "url" }, el("code", {}, d.url || "—")),
          el("td", {}, state),
          bitrate,
          error,
          el("td", { class: "actions" }, toggle, remove),
        ),
      );
    }
    if (!stream.destinations.length) {
      tbody.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No destinations yet.")));
    }
  }

  // -- live updates --------------------------------------------------------------------------
  function applyStats(streams) {
    const mine = streams[String(streamId)];
    if (!mine || !stream) return;
    document.getElementById("protecting").hidden = !mine.protecting;
    for (const [id, out] of Object.entries(mine.destinations)) {
      const c = cells.get(Number(id));
      if (out.ready) ready.add(Number(id));
      if (!c) continue;
      S.stateBadge(c.state, out.state);
      c.bitrate.textContent = out.bitrateKbps ? `${out.bitrateKbps} kb/s` : "—";
      c.error.textContent = out.lastError || "";
    }
    preview.sync();
  }

  S.liveEvents({
    // (Re)connected: reload, so nothing that changed while the stream was closed is missed.
    hello: async (e) => {
      await load();
      applyStats(e.streams);
    },
    stats: (e) => applyStats(e.streams),
    stream: (e) => {
      if (e.streamId !== streamId) return;
      if (e.status === "idle") ready.clear();
      load();
    },
    output: (e) => {
      if (e.streamId !== streamId) return;
      const c = cells.get(e.destinationId);
      if (c) {
        S.stateBadge(c.state, e.state);
        c.error.textContent = e.lastError || "";
      }
    },
    resync: load,
  });

  // -- HLS preview (hls.js, with the session cookie) -------------------------------------------
  const preview = (() => {
    const video = document.getElementById("preview");
    let hls = null;
    let src = null;

    function wanted() {
      if (!stream || stream.status !== "active") return null;
      const d = stream.destinations.find((x) => x.type === "self-hosted" && x.enabled && ready.has(x.id));
      return d && d.url ? new URL(d.url, window.location.href).pathname : null;
    }

    function stop() {
      if (hls) hls.destroy();
      hls = null;
      src = null;
      video.removeAttribute("src");
      video.load();
      video.dataset.playing = "false";
    }

    function sync() {
      const next = wanted();
      if (next === src) return;
      stop();
      if (!next) return;
      src = next;
      if (window.Hls && window.Hls.isSupported()) {
        // Low-latency mode engages only when the playlist offers parts (LL-HLS).
        hls = new window.Hls({
          liveDurationInfinity: true,
          lowLatencyMode: true,
          maxLiveSyncPlaybackRate: 1.25,
        });
        hls.on(window.Hls.Events.ERROR, (_event, data) => {
          if (data.fatal) stop();
        });
        hls.loadSource(src);
        hls.attachMedia(video);
      } else {
        video.src = src;
      }
      video.dataset.playing = "true";
      video.play().catch(() => {});
    }

    return { sync };
  })();

  // -- actions ---------------------------------------------------------------------------------
  async function setEnabled(d, enabled) {
    const done = await attempt(
      () => api("PATCH", `${base}/destinations/${d.id}`, { enabled }),
      enabled ? "Destination enabled" : "Destination disabled",
    );
    if (done) load();
  }

  async function removeDestination(d) {
    if (!window.confirm(`Delete the ${d.platform} destination?`)) return;
    const done = await attempt(() => api("DELETE", `${base}/destinations/${d.id}`), "Destination deleted");
    if (done) load();
  }

  document.getElementById("reveal-key").addEventListener("click", () => {
    keyShown = !keyShown;
    showKey();
  });
  document.getElementById("copy-key").addEventListener("click", () => {
    if (stream) S.copyText(stream.streamKey);
  });

  document.getElementById("rotate-key").addEventListener("click", async () => {
    const warning = "Issue a new stream key? Encoders must use the new key from their next connection.";
    if (!window.confirm(warning)) return;
    const rotated = await attempt(() => api("POST", `${base}/rotate-key`), "New stream key issued");
    if (!rotated) return;
    stream = rotated;
    keyShown = true;
    render();
  });

  document.getElementById("stop").addEventListener("click", async () => {
    await attempt(() => api("POST", `${base}/stop`), "Stop signal sent");
  });

  document.getElementById("delete-stream").addEventListener("click", async () => {
    if (!window.confirm("Delete this stream and all its destinations?")) return;
    const done = await attempt(() => api("DELETE", base));
    if (done) window.location.assign("/streams");
  });

  document.getElementById("limits-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => {
      const raw = document.getElementById(id).value.trim();
      return raw === "" ? null : Number(raw);
    };
    const body = { maxSats: value("max-sats"), maxDurationMinutes: value("max-minutes") };
    const done = await attempt(() => api("POST", `${base}/limits`, body), "Limits saved");
    if (done) load();
  });

  document.getElementById("protection-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const protection = {
      enabled: document.getElementById("protection-enabled").checked,
      graceSeconds: Number(document.getElementById("grace-seconds").value),
    };
    const done = await attempt(() => api("PATCH", base, { protection }), "Protection saved (from the next session)");
    if (done) load();
  });

  const addRowBox = document.getElementById("add-dest-row");
  let addRow = S.destinationRow({ removable: false });
  addRowBox.append(addRow);
  document.getElementById("add-dest-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const created = await attempt(() => api("POST", `${base}/destinations`, addRow.toBody()), "Destination added");
    if (!created) return;
    addRow.remove();
    addRow = S.destinationRow({ removable: false });
    addRowBox.append(addRow);
    if (created.apiKey) {
      const id = `new-key-${created.id}`;
      addRowBox.append(
        el("p", { class: "reveal" }, "Public key (shown once): ",
          el("code", { id, class: "secret" }, created.apiKey), " ",
          el("button", { type: "button", class: "small", dataset: { copyFrom: id } }, "Copy")),
      );
    }
    load();
  });

  load();
})();
