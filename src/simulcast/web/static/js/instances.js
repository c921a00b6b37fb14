// Instances (v1 dialect): configurations (from templates), launch, the account's instances
// with their status and outputs, stop, and the saved destinations outputs send to.
"use strict";

(() => {
  const S = window.Simulcast;
  const { el, api, attempt } = S;
  const V1 = "/api/v1";
  let pollTimer = 0;

  function badge(state, text) {
    return el("span", { class: "badge", dataset: { state } }, text ?? state);
  }

  // -- instances -----------------------------------------------------------------------------
  async function loadInstances() {
    const data = await attempt(() => api("GET", `${V1}/instances`));
    if (!data) return;
    S.fillTable("instances", data.instances, (inst) => {
      const status = inst.status.toLowerCase();
      const live = inst.outputs === "LIVE";
      const stop = inst.status === "STOPPED" ? null : el(
        "button",
        {
          type: "button", class: "small danger", "aria-label": `Stop ${inst.name}`,
          on: { click: () => stopInstance(inst) },
        },
        inst.status === "QUEUED" ? "Cancel" : "Stop",
      );
      return el(
        "tr",
        { dataset: { instanceId: inst.id, status } },
        el("td", {}, el("a", { href: `/instances/${encodeURIComponent(inst.id)}` }, inst.name || inst.id)),
        el("td", {}, badge(status === "running" ? "live" : status, status),
          inst.stopReason ? el("span", { class: "muted small" }, ` (${inst.stopReason})`) : null),
        el("td", { class: "outputs" }, badge(live ? "live" : "offline", live ? "LIVE" : "OFFLINE")),
        el("td", {}, S.when(inst.createdAt)),
        el("td", { class: "actions" }, stop),
      );
    });
    // Only a queued instance changes by itself soon (it starts when capacity frees up).
    clearTimeout(pollTimer);
    if (data.instances.some((i) => i.status === "QUEUED")) pollTimer = setTimeout(loadInstances, 3000);
  }

  async function stopInstance(inst) {
    if (!window.confirm(`Stop the instance "${inst.name || inst.id}"?`)) return;
    await attempt(() => api("DELETE", `${V1}/instances/${encodeURIComponent(inst.id)}`), "Instance stopped");
    loadInstances();
  }

  // -- configurations ------------------------------------------------------------------------
  async function loadConfigurations() {
    const data = await attempt(() => api("GET", `${V1}/configurations`));
    if (!data) return;
    S.fillTable("configurations", data.configurations, (c) =>
      el(
        "tr",
        { dataset: { configurationId: c.id } },
        el("td", {}, c.name),
        el("td", { class: "small" }, c.elements.map((e) => e.id).join(" → ")),
        el("td", {}, S.when(c.updatedAt)),
        el(
          "td",
          { class: "actions" },
          el("button", {
            type: "button", class: "small primary", "aria-label": `Launch ${c.name}`,
            on: { click: () => launch(c) },
          }, "Launch"),
          el("button", {
            type: "button", class: "small danger", "aria-label": `Delete ${c.name}`,
            on: { click: () => deleteConfiguration(c) },
          }, "Delete"),
        ),
      ),
    );
  }

  async function launch(config) {
    const path = `${V1}/configurations/${encodeURIComponent(config.id)}/instances`;
    const request = await attempt(() => api("POST", path), "Instance launched");
    if (request) loadInstances();
  }

  async function deleteConfiguration(config) {
    if (!window.confirm(`Delete the configuration "${config.name}"?`)) return;
    const done = await attempt(
      () => api("DELETE", `${V1}/configurations/${encodeURIComponent(config.id)}`).then(() => true),
      "Configuration deleted",
    );
    if (done) loadConfigurations();
  }

  const templates = new Map();
  const select = document.getElementById("template");
  async function loadTemplates() {
    const data = await attempt(() => api("GET", `${V1}/templates`));
    if (!data) return;
    for (const t of data.templates) {
      templates.set(t.name, t);
      select.append(el("option", { value: t.name }, t.name));
    }
    describeTemplate();
  }
  function describeTemplate() {
    document.getElementById("template-description").textContent = templates.get(select.value)?.description ?? "";
  }
  select.addEventListener("change", describeTemplate);

  document.getElementById("template-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { template: select.value, name: document.getElementById("config-name").value.trim() };
    const made = await attempt(() => api("POST", `${V1}/configurations`, body), "Configuration created");
    if (!made) return;
    document.getElementById("config-name").value = "";
    loadConfigurations();
  });

  // -- destinations --------------------------------------------------------------------------
  async function loadDestinations() {
    const data = await attempt(() => api("GET", `${V1}/destinations`));
    if (!data) return;
    S.fillTable("v1-destinations", data.destinations, (d) => {
      const idCell = `v1-dest-id-${d.id}`;
      return el(
        "tr",
        { dataset: { destinationId: d.id } },
        el("td", {}, d.name),
        el("td", {}, d.platform),
        el("td", { class: "url" }, el("code", {}, d.url)),
        el("td", {}, el("code", { id: idCell }, d.id), " ",
          el("button", { type: "button", class: "small", dataset: { copyFrom: idCell }, "aria-label": `Copy the id of ${d.name}` }, "Copy")),
        el("td", { class: "actions" }, el("button", {
          type: "button", class: "small danger", "aria-label": `Delete ${d.name}`,
          on: { click: () => deleteDestination(d) },
        }, "Delete")),
      );
    });
  }

  async function deleteDestination(d) {
    if (!window.confirm(`Delete the destination "${d.name}"?`)) return;
    const done = await attempt(
      () => api("DELETE", `${V1}/destinations/${encodeURIComponent(d.id)}`).then(() => true),
      "Destination deleted",
    );
    if (done) loadDestinations();
  }

  document.getElementById("v1-dest-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const body = {
      name: document.getElementById("v1-dest-name").value.trim(),
      url: document.getElementById("v1-dest-url").value.trim(),
    };
    const key = document.getElementById("v1-dest-key").value.trim();
    if (key) body.key = key;
    const made = await attempt(() => api("POST", `${V1}/destinations`, body), "Destination added");
    if (!made) return;
    form.reset();
    loadDestinations();
  });

  loadTemplates();
  loadConfigurations();
  loadInstances();
  loadDestinations();
})();
