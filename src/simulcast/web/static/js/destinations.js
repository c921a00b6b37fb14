// A destination editor row, shared by "new stream" and "add a destination": type, then the
// fields that type needs; toBody() gives the API's destination object.
"use strict";

(() => {
  const { el } = window.Simulcast;
  let counter = 0;

  const TYPES = [
    ["rtmp", "RTMP / RTMPS server (YouTube, Kick, Facebook, any URL)"],
    ["twitch", "Twitch"],
    ["self-hosted", "Self-hosted HLS (play on your own site)"],
  ];

  function field(id, label, input) {
    return el("div", { class: "field", dataset: { for: id } }, el("label", { for: id }, label), input);
  }

  function destinationRow({ removable = true } = {}) {
    const n = ++counter;
    const id = (name) => `dest-${n}-${name}`;
    const type = el("select", { id: id("type") }, TYPES.map(([v, t]) => el("option", { value: v }, t)));
    const url = el("input", { id: id("url"), type: "text", placeholder: "rtmp://a.rtmp.youtube.com/live2" });
    const key = el("input", { id: id("key"), type: "password", autocomplete: "off" });
    const mode = el(
      "select",
      { id: id("mode") },
      el("option", { value: "testing" }, "Testing (free, up to 60 playlist requests a minute)"),
      el("option", { value: "production" }, "Production (unlimited viewers, bandwidth billed)"),
    );
    const dvr = el("input", { id: id("dvr"), type: "number", min: "0", max: "3600", value: "1800" });
    const fields = {
      url: field(id("url"), "Server URL", url),
      key: field(id("key"), "Stream key", key),
      mode: field(id("mode"), "Mode", mode),
      dvr: field(id("dvr"), "Rewind window (seconds, 0 for live only)", dvr),
    };
    const row = el(
      "div",
      { class: "dest-row", dataset: { row: String(n) } },
      field(id("type"), "Destination type", type),
      Object.values(fields),
    );
    if (removable) {
      row.append(el("button", { type: "button", class: "small", on: { click: () => row.remove() } }, "Remove"));
    }
    function sync() {
      const t = type.value;
      fields.url.hidden = t === "self-hosted";
      fields.key.hidden = t === "self-hosted";
      fields.mode.hidden = t !== "self-hosted";
      fields.dvr.hidden = t !== "self-hosted";
      url.required = t === "rtmp";
      url.placeholder = t === "twitch" ? "optional: rtmp://live.twitch.tv/app" : "rtmp://a.rtmp.youtube.com/live2";
      fields.url.querySelector("label").textContent = t === "twitch" ? "Server URL (optional)" : "Server URL";
    }
    type.addEventListener("change", sync);
    sync();
    row.toBody = () => {
      const t = type.value;
      if (t === "self-hosted") {
        return { type: t, config: { mode: mode.value, dvrWindowSeconds: Number(dvr.value || 0) } };
      }
      const config = {};
      if (url.value.trim()) config.url = url.value.trim();
      if (key.value.trim()) config.key = key.value.trim();
      return { type: t, config };
    };
    return row;
  }

  // The <iframe> and <simulcast-player> snippets of a self-hosted destination's public key.
  function embedSnippets(base, apiKey) {
    const src = `${base}/player?apiKey=${encodeURIComponent(apiKey)}`;
    return [
      `<iframe src="${src}" width="640" height="360" allow="autoplay; fullscreen" allowfullscreen style="border:0"></iframe>`,
      `<script src="${base}/player.js"></script>\n<simulcast-player api-key="${apiKey}"></simulcast-player>`,
    ];
  }

  window.Simulcast.destinationRow = destinationRow;
  window.Simulcast.embedSnippets = embedSnippets;
})();
