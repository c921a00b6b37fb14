// Shared by every dashboard page: the API client (session cookie + CSRF header), DOM helpers,
// formatting, and the live event stream.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || `Request failed (HTTP ${status})`);
      this.status = status;
      this.body = body;
    }
  }

  // Calls the JSON API as the signed-in user. State changes carry the page's CSRF token.
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const data = await response.json().catch(() => null);
    if (response.status === 401) {
      window.location.assign("/");
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // el("td", {class: "x", dataset: {id: 1}}, "text", child): builds DOM without HTML strings.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  let toastTimer = 0;
  function toast(message, isError = false) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("error", isError);
    box.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => box.classList.remove("show"), 4000);
  }

  // Runs an action, reporting failures in the toast instead of the console.
  async function attempt(fn, success) {
    try {
      const result = await fn();
      if (success) toast(success);
      return result;
    } catch (err) {
      toast(err.message || String(err), true);
      return undefined;
    }
  }

  function when(ms) {
    if (!ms) return "—";
    return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "kB", "MB", "GB", "TB"];
    const i = Math.min(units.length - 1, Math.floor(Math.log10(n) / 3));
    return `${(n / 10 ** (3 * i)).toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Plain http on another host has no clipboard API: fall back to a selected textarea.
      const area = el("textarea", { class: "sr-only", "aria-hidden": "true" }, text);
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    toast("Copied to the clipboard");
  }

  // The account's live changes (server-sent events); the browser reconnects by itself.
  function liveEvents(handlers) {
    const source = new EventSource("/api/events");
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => fn(JSON.parse(event.data)));
    }
    document.documentElement.dataset.events = "connecting";
    source.addEventListener("hello", () => {
      document.documentElement.dataset.events = "open";
    });
    window.addEventListener("pagehide", () => source.close());
    return source;
  }

  // Every list table (templates/_tables.html) is filled one way: its body becomes one row per
  // item, and its "<id>-empty" note, on the pages that have one, shows when there are none.
  // Returns the body, for a page that adds to it.
  function fillTable(id, items, row) {
    const tbody = document.querySelector(`#${id} tbody`);
    tbody.replaceChildren(...items.map((item) => row(item)));
    const empty = document.getElementById(`${id}-empty`);
    if (empty) empty.hidden = items.length > 0;
    return tbody;
  }

  function stateBadge(node, state) {
    node.textContent = state === "active" ? "live" : state;
    node.dataset.state = state;
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy-from]");
    if (button) copyText(document.getElementById(button.dataset.copyFrom).textContent.trim());
  });

  window.Simulcast = {
    api, ApiError, el, toast, attempt, when, bytes, copyText, liveEvents, stateBadge, fillTable,
  };
})();
