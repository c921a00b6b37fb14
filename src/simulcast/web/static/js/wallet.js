// Wallet: balance, totals, usage per day (charts from the existing endpoints), ledger.
"use strict";

(() => {
  const S = window.Simulcast;
  const { el, api, attempt } = S;
  const DAY = 86_400_000;

  function dayStart(ms) {
    const d = new Date(ms);
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  }

  function days(n) {
    const today = dayStart(Date.now());
    return Array.from({ length: n }, (_, i) => today - (n - 1 - i) * DAY);
  }

  function chart(id, label, xsMs, ys, color) {
    const box = document.getElementById(id);
    box.replaceChildren();
    if (!window.uPlot) return;
    const opts = {
      width: Math.max(240, box.clientWidth),
      height: 180,
      legend: { show: false },
      // Half a day of room on each side, so the first and last bars are drawn whole.
      scales: { x: { time: true, range: (_u, min, max) => [min - 43_200, max + 43_200] } },
      series: [
        {},
        {
          label,
          stroke: color,
          fill: `${color}55`,
          points: { show: false },
          paths: window.uPlot.paths.bars({ size: [0.6, 40] }),
        },
      ],
      axes: [{ stroke: "#444" }, { stroke: "#444" }],
    };
    new window.uPlot(opts, [xsMs.map((x) => x / 1000), ys], box);
    box.setAttribute("aria-label", `${label}: ${ys.map((y, i) => `${new Date(xsMs[i]).toLocaleDateString()} ${y}`).join(", ")}`);
  }

  async function balance() {
    const b = await attempt(() => api("GET", "/api/wallet/balance"));
    if (b) document.getElementById("balance").textContent = b.balance.toLocaleString();
  }

  async function week() {
    const [stats, bw] = await Promise.all([
      attempt(() => api("GET", "/api/dashboard/stats?filter=week")),
      attempt(() => api("GET", "/api/bandwidth/usage?filter=week")),
    ]);
    if (stats) {
      document.getElementById("week-minutes").textContent = stats.totalMinutes;
      document.getElementById("week-sats").textContent = stats.totalSatsSpent.toLocaleString();
    }
    if (bw) document.getElementById("week-gb").textContent = `${bw.totalGB} GB (${bw.overageSats} sats overage)`;
  }

  async function usage() {
    const xs = days(14);
    const rows = await attempt(() => api("GET", `/api/stream-history?startDate=${xs[0]}`));
    if (rows) {
      const minutes = new Map();
      const sats = new Map();
      for (const r of rows) {
        const day = dayStart(r.startedAt);
        // One row per session and platform: a session's minutes count once, its sats add up.
        const perSession = minutes.get(day) || new Map();
        perSession.set(r.sessionId, Math.max(perSession.get(r.sessionId) || 0, r.durationMinutes));
        minutes.set(day, perSession);
        sats.set(day, (sats.get(day) || 0) + r.totalCostSats);
      }
      const mins = xs.map((d) => [...(minutes.get(d) || new Map()).values()].reduce((a, b) => a + b, 0));
      chart("chart-minutes", "Minutes", xs, mins.map((m) => Math.round(m * 10) / 10), "#2563eb");
      chart("chart-sats", "Sats", xs, xs.map((d) => sats.get(d) || 0), "#b45309");
    }
    const week = days(7);
    const gb = await Promise.all(
      week.map((d) => api("GET", `/api/bandwidth/usage?startDate=${d}&endDate=${d + DAY - 1}`).catch(() => null)),
    );
    chart("chart-bandwidth", "GB", week, gb.map((g) => (g ? g.totalGB : 0)), "#047857");
  }

  async function ledger() {
    const rows = await attempt(() => api("GET", "/api/wallet/ledger?limit=50"));
    if (!rows) return;
    S.fillTable("ledger", rows, (r) =>
      el(
        "tr",
        {},
        el("td", {}, S.when(r.createdAt)),
        el("td", {}, r.kind.replace("_", " ")),
        el("td", { class: `num ${r.amountSats < 0 ? "neg" : "pos"}` }, r.amountSats.toLocaleString()),
        el("td", {}, r.memo),
      ),
    );
  }

  function showTipSettings(t) {
    document.getElementById("tips-enabled").checked = t.enabled;
    document.getElementById("tips-min").value = t.minSats;
    document.getElementById("tips-max").value = t.maxSats;
    const why = {
      tips_disabled: "tips are off",
      no_wallet: "connect a Lightning wallet over NWC first (POST /api/wallet/nwc)",
    };
    document.getElementById("tips-state").textContent = t.available
      ? "Viewers see the tip button."
      : `The tip button is hidden: ${why[t.reason] || t.message}.`;
  }

  async function tips() {
    const [settings, rows] = await Promise.all([
      api("GET", "/api/wallet/tips/settings").catch(() => null),
      api("GET", "/api/wallet/tips?limit=50").catch(() => null),
    ]);
    if (settings) showTipSettings(settings);
    if (!rows) return;
    // Messages are viewer-written: text nodes only (el() never parses HTML).
    S.fillTable("tips", rows, (t) =>
      el(
        "tr",
        { dataset: { hash: t.paymentHash } },
        el("td", {}, S.when(t.paidAt || t.createdAt)),
        el("td", { class: "num" }, t.amountSats.toLocaleString()),
        el("td", {}, t.status),
        el("td", { class: "tip-message" }, t.message || ""),
      ),
    );
  }

  document.getElementById("tip-settings").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      enabled: document.getElementById("tips-enabled").checked,
      minSats: Number(document.getElementById("tips-min").value),
      maxSats: Number(document.getElementById("tips-max").value),
    };
    const saved = await attempt(() => api("PUT", "/api/wallet/tips/settings", body), "Tip settings saved");
    if (saved) showTipSettings(saved);
  });

  balance();
  week();
  tips();
  setInterval(tips, 15_000);
  usage();
  ledger();
})();
