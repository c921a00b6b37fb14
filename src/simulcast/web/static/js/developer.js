// Developer tools: API keys and session tokens, webhooks and their delivery log, embed snippets.
"use strict";

(() => {
  const S = window.Simulcast;
  const { el, api, attempt } = S;
  const baseUrl = document.getElementById("dev-root").dataset.baseUrl || window.location.origin;

  // -- API keys and sessions ------------------------------------------------------------------
  async function loadKeys() {
    const keys = await attempt(() => api("GET", "/api/keys"));
    if (!keys) return;
    S.fillTable("keys", keys, (k) =>
      el(
        "tr",
        { dataset: { keyId: String(k.id) } },
        el("td", {}, el("code", {}, `${k.prefix}…`)),
        el("td", {}, k.label || "—"),
        el("td", {}, S.when(k.createdAt)),
        el("td", {}, S.when(k.lastUsedAt)),
        el(
          "td",
          { class: "actions" },
          el("button", { type: "button", class: "small danger", on: { click: () => revokeKey(k) } }, "Revoke"),
        ),
      ),
    );
  }

  async function revokeKey(k) {
    if (!window.confirm(`Revoke the key ${k.prefix}…? Programs using it stop working at once.`)) return;
    if (await attempt(() => api("DELETE", `/api/keys/${k.id}`), "Key revoked")) {
      document.getElementById("key-created").hidden = true;
      loadKeys();
    }
  }

  document.getElementById("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const label = document.getElementById("key-name").value.trim();
    const created = await attempt(() => api("POST", "/api/keys", { label }), "Key created");
    if (!created) return;
    form.reset();
    const box = document.getElementById("key-created");
    box.replaceChildren(
      el("p", {}, "Your new key, shown ", el("strong", {}, "only this once"), ":"),
      el("p", {}, el("code", { id: "new-key", class: "secret" }, created.key), " ",
        el("button", { type: "button", class: "small", dataset: { copyFrom: "new-key" } }, "Copy")),
    );
    box.hidden = false;
    loadKeys();
  });

  async function loadSessions() {
    const rows = await attempt(() => api("GET", "/api/sessions"));
    if (!rows) return;
    S.fillTable("sessions", rows, (r) =>
      el(
        "tr",
        { dataset: { sessionId: String(r.id) } },
        el("td", {}, r.current ? "This browser" : `Session ${r.id}`),
        el("td", {}, S.when(r.createdAt)),
        el("td", {}, S.when(r.lastUsedAt)),
        el("td", {}, S.when(r.expiresAt)),
        el(
          "td",
          { class: "actions" },
          el("button", { type: "button", class: "small danger", on: { click: () => revokeSession(r) } }, "Revoke"),
        ),
      ),
    );
  }

  async function revokeSession(r) {
    const what = r.current ? "This signs you out here." : "That browser is signed out at once.";
    if (!window.confirm(`Revoke this session? ${what}`)) return;
    if (await attempt(() => api("DELETE", `/api/sessions/${r.id}`), "Session revoked")) {
      if (r.current) window.location.assign("/");
      else loadSessions();
    }
  }

  // -- webhooks ------------------------------------------------------------------------------
  let shownHook = null;

  async function loadWebhooks() {
    const hooks = await attempt(() => api("GET", "/api/webhooks"));
    if (!hooks) return;
    S.fillTable("webhooks", hooks, (h) =>
      el(
        "tr",
        { dataset: { webhookId: String(h.id) } },
        el("td", { class: "url" }, el("code", {}, h.url)),
        el("td", {}, h.events.join(", ")),
        el("td", {}, h.hasSecret ? "yes" : "no"),
        el(
          "td",
          { class: "actions" },
          el("button", { type: "button", class: "small", on: { click: () => testHook(h) } }, "Send test"),
          el("button", { type: "button", class: "small", on: { click: () => showDeliveries(h) } }, "Deliveries"),
          el("button", { type: "button", class: "small danger", on: { click: () => deleteHook(h) } }, "Delete"),
        ),
      ),
    );
  }

  async function testHook(h) {
    const queued = await attempt(() => api("POST", `/api/webhooks/${h.id}/test`), "test.ping queued");
    if (!queued) return;
    await showDeliveries(h);
    // Follow the new delivery until it is settled (a few seconds at most).
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const rows = await showDeliveries(h);
      const mine = rows && rows.find((r) => r.id === queued.deliveryId);
      if (mine && mine.status !== "pending") break;
    }
  }

  async function showDeliveries(h) {
    shownHook = h;
    const rows = await attempt(() => api("GET", `/api/webhooks/${h.id}/deliveries?limit=20`));
    if (!rows || shownHook !== h) return rows;
    document.getElementById("deliveries-panel").hidden = false;
    document.getElementById("deliveries-title").textContent = `Deliveries to ${h.url}`;
    const tbody = S.fillTable("deliveries", rows, (r) =>
      el(
        "tr",
        { dataset: { deliveryId: r.id, status: r.status } },
        el("td", {}, r.event),
        el("td", {}, el("span", { class: "badge", dataset: { state: r.status } }, r.status)),
        el("td", {}, r.lastStatusCode ? `HTTP ${r.lastStatusCode}` : r.lastError || "—"),
        el("td", { class: "num" }, r.attempts),
        el("td", {}, S.when(r.deliveredAt || r.createdAt)),
      ),
    );
    if (!rows.length) tbody.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No deliveries yet.")));
    return rows;
  }

  async function deleteHook(h) {
    if (!window.confirm(`Delete the webhook to ${h.url}?`)) return;
    if (await attempt(() => api("DELETE", `/api/webhooks/${h.id}`), "Webhook deleted")) {
      if (shownHook === h) document.getElementById("deliveries-panel").hidden = true;
      loadWebhooks();
    }
  }

  document.getElementById("webhook-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const body = {
      url: document.getElementById("webhook-url").value.trim(),
      events: [...form.querySelectorAll('input[name="event"]:checked')].map((i) => i.value),
    };
    const secret = document.getElementById("webhook-secret").value;
    if (secret) body.secret = secret;
    if (await attempt(() => api("POST", "/api/webhooks", body), "Webhook added")) {
      form.reset();
      loadWebhooks();
    }
  });

  // -- embed snippets --------------------------------------------------------------------------
  function embedBlock(stream, dest, apiKey) {
    const [iframe, tag] = S.embedSnippets(baseUrl, apiKey || "pk_YOUR_PUBLIC_KEY");
    const block = el(
      "div",
      { class: "embed", dataset: { destinationId: String(dest.id) } },
      el("h3", {}, `${stream.label}: self-hosted (${dest.mode || "testing"})`),
      apiKey
        ? el("p", { class: "reveal" }, "New public key (shown once): ", el("code", { class: "secret" }, apiKey))
        : el("p", { class: "muted small" }, "Use the public key shown when the destination was created."),
      el("p", { class: "small" }, "As an iframe:"),
      el("pre", { class: "snippet" }, el("code", {}, iframe)),
      el("p", { class: "small" }, "As a tag:"),
      el("pre", { class: "snippet" }, el("code", {}, tag)),
    );
    const rotate = async () => {
      const warning = "Issue a new public key? Pages using the current key stop playing until updated.";
      if (!window.confirm(warning)) return;
      const rotated = await attempt(() => api("POST", `/api/destinations/${dest.id}/rotate-api-key`), "New public key issued");
      if (rotated) block.replaceWith(embedBlock(stream, dest, rotated.apiKey));
    };
    block.append(el("button", { type: "button", class: "small", on: { click: rotate } }, "Rotate public key"));
    return block;
  }

  async function loadEmbeds() {
    const streams = await attempt(() => api("GET", "/api/streams"));
    if (!streams) return;
    const box = document.getElementById("embeds");
    box.replaceChildren();
    for (const summary of streams) {
      const stream = await attempt(() => api("GET", `/api/streams/${summary.id}`));
      for (const dest of (stream ? stream.destinations : []).filter((d) => d.type === "self-hosted")) {
        box.append(embedBlock(stream, dest, null));
      }
    }
    document.getElementById("embeds-empty").hidden = box.children.length > 0;
  }

  loadKeys();
  loadSessions();
  loadWebhooks();
  loadEmbeds();
})();
