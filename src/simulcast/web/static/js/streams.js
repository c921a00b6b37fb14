// Streams: the list with live state (server-sent events), and creating a stream.
"use strict";

(() => {
  const S = window.Simulcast;
  const { el, api, attempt } = S;
  const tbody = document.querySelector("#streams-table tbody");
  const rows = new Map();

  function render(streams) {
    tbody.replaceChildren();
    rows.clear();
    for (const s of streams) {
      const badge = el("span", { class: "badge" });
      S.stateBadge(badge, s.status);
      const row = el(
        "tr",
        { dataset: { streamId: String(s.id) } },
        el("td", {}, el("a", { href: `/streams/${s.id}` }, s.label)),
        el("td", {}, badge, s.locked ? el("span", { class: "badge warn" }, "locked") : null),
        el("td", {}, S.when(s.createdAt)),
      );
      rows.set(s.id, badge);
      tbody.append(row);
    }
    document.getElementById("streams-empty").hidden = streams.length > 0;
  }

  async function load() {
    const streams = await attempt(() => api("GET", "/api/streams"));
    if (streams) render(streams);
  }

  S.liveEvents({
    // (Re)connected: reload, so nothing that changed while the stream was closed is missed.
    hello: load,
    stream: (e) => {
      const badge = rows.get(e.streamId);
      if (badge) S.stateBadge(badge, e.status);
      else load();
    },
    resync: load,
  });

  // -- creation ----------------------------------------------------------------------------
  const destRows = document.getElementById("dest-rows");
  document.getElementById("add-dest-row").addEventListener("click", () => {
    destRows.append(S.destinationRow());
  });

  document.getElementById("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const body = {
      label: form.querySelector("#new-label").value.trim(),
      destinations: [...destRows.children].map((row) => row.toBody()),
    };
    const created = await attempt(() => api("POST", "/api/streams", body), "Stream created");
    if (!created) return;
    form.reset();
    destRows.replaceChildren();
    showCreated(created);
    load();
  });

  function showCreated(created) {
    const box = document.getElementById("created");
    const keys = document.getElementById("created-keys");
    keys.replaceChildren();
    for (const d of created.destinations.filter((d) => d.apiKey)) {
      const id = `created-key-${d.id}`;
      const [iframe] = S.embedSnippets(window.location.origin, d.apiKey);
      keys.append(
        el(
          "div",
          { class: "stack" },
          el("p", {}, "Self-hosted destination public key: ",
            el("code", { id, class: "secret" }, d.apiKey), " ",
            el("button", { type: "button", class: "small", dataset: { copyFrom: id } }, "Copy")),
          el("pre", { class: "snippet" }, el("code", {}, iframe)),
        ),
      );
    }
    if (!keys.children.length) keys.append(el("p", { class: "muted" }, "No self-hosted destination: no public key."));
    document.getElementById("created-link").href = `/streams/${created.id}`;
    box.hidden = false;
    box.scrollIntoView({ behavior: "smooth" });
  }

  destRows.append(S.destinationRow());
  load();
})();
