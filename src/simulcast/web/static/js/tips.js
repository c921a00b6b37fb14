// The player's "Support the stream" button: when the streamer takes tips (their own wallet makes
// the invoice), pick an amount, pay the invoice by QR code or copy, and see a thank-you once the
// streamer's wallet reports it paid. Hidden with ?tips=0 or when the streamer takes no tips.
"use strict";

(() => {
  const params = new URLSearchParams(window.location.search);
  const apiKey = params.get("apiKey") || "";
  const $ = (id) => document.getElementById(id);
  const openButton = $("tip-open");
  const dialog = $("tip");
  const form = $("tip-form");
  const amount = $("tip-amount");
  const pay = $("tip-pay");
  const error = $("tip-error");
  const OFFER_POLL_MS = 60_000;
  const STATUS_POLL_MS = 1500;
  let statusTimer = 0;
  let current = null;

  async function call(method, path, body) {
    const response = await fetch(path, {
      method,
      credentials: "omit",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-API-Key": apiKey },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error((data && data.error) || `Request failed (HTTP ${response.status})`);
    return data;
  }

  function preset(sats) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tip-preset";
    button.textContent = sats.toLocaleString();
    button.setAttribute("aria-label", `${sats} sats`);
    button.addEventListener("click", () => {
      amount.value = String(sats);
      for (const other of document.querySelectorAll(".tip-preset")) other.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-pressed", "true");
    });
    return button;
  }

  async function refreshOffer() {
    let offer = null;
    try {
      offer = await call("GET", "/api/public/tips/offer");
    } catch {
      offer = null;
    }
    const on = Boolean(offer && offer.available);
    document.getElementById("player").dataset.tips = on ? "on" : "off";
    openButton.hidden = !on || !dialog.hidden;
    if (offer && offer.available) {
      amount.min = String(offer.minSats);
      amount.max = String(offer.maxSats);
      if (!amount.value) amount.value = String(offer.presets[0]);
      $("tip-presets").replaceChildren(...offer.presets.map(preset));
    } else if (!dialog.hidden && !current) {
      close();
    }
  }

  function reset() {
    clearTimeout(statusTimer);
    current = null;
    form.hidden = false;
    pay.hidden = true;
    $("tip-thanks").hidden = true;
    error.textContent = "";
  }

  function close() {
    reset();
    dialog.hidden = true;
    openButton.hidden = document.getElementById("player").dataset.tips !== "on";
    openButton.focus();
  }

  async function poll() {
    if (!current) return;
    let status = null;
    try {
      const response = await fetch(`/api/public/tips/${current}`, { credentials: "omit" });
      status = response.ok ? await response.json() : null;
    } catch {
      status = null;
    }
    if (status && status.status === "paid") {
      pay.hidden = true;
      $("tip-thanks").hidden = false;
      current = null;
      return;
    }
    if (status && status.status === "expired") {
      pay.hidden = true;
      form.hidden = false;
      error.textContent = "The invoice expired. Ask for a new one.";
      current = null;
      return;
    }
    statusTimer = setTimeout(poll, STATUS_POLL_MS);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const message = $("tip-message").value.trim();
    let tip;
    try {
      tip = await call("POST", "/api/public/tips", {
        amountSats: Number(amount.value),
        ...(message ? { message } : {}),
      });
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    current = tip.paymentHash;
    $("tip-invoice").textContent = tip.invoice;
    $("tip-wallet").href = `lightning:${tip.invoice}`;
    if (window.qrcode) {
      const qr = window.qrcode(0, "L");
      qr.addData(tip.invoice.toUpperCase(), "Alphanumeric"); // upper case: the denser QR mode
      qr.make();
      $("tip-qr").src = qr.createDataURL(4, 4);
    }
    form.hidden = true;
    pay.hidden = false;
    $("tip-copy").focus();
    statusTimer = setTimeout(poll, STATUS_POLL_MS);
  });

  $("tip-copy").addEventListener("click", async () => {
    const text = $("tip-invoice").textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const range = document.createRange();
      range.selectNodeContents($("tip-invoice"));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      document.execCommand("copy");
    }
    $("tip-copy").textContent = "Copied";
  });

  openButton.addEventListener("click", () => {
    reset();
    dialog.hidden = false;
    openButton.hidden = true;
    amount.focus();
  });
  $("tip-close").addEventListener("click", close);
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });

  if (apiKey && params.get("tips") !== "0") {
    refreshOffer();
    setInterval(refreshOffer, OFFER_POLL_MS);
  }
})();
