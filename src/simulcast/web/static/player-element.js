// <simulcast-player api-key="pk_..."></simulcast-player>: the embeddable player as a tag.
// It frames this server's /player page, so the page's own security policy and scripts apply.
// Optional attributes: height="480" (CSS pixels; otherwise 16:9), autoplay="false",
// muted="false", tips="false" (no "Support the stream" button).
"use strict";

(() => {
  const origin = new URL(document.currentScript ? document.currentScript.src : window.location.href).origin;
  const OFF = new Set(["false", "0", "no", "off"]);

  class SimulcastPlayer extends HTMLElement {
    static get observedAttributes() {
      return ["api-key", "height", "autoplay", "muted", "tips"];
    }

    connectedCallback() {
      if (!this.shadowRoot) {
        const shadow = this.attachShadow({ mode: "open" });
        const style = document.createElement("style");
        style.textContent = ":host{display:block;aspect-ratio:16/9;max-width:100%}:host([height]){aspect-ratio:auto}iframe{width:100%;height:100%;border:0}";
        this.frame = document.createElement("iframe");
        this.frame.setAttribute("allow", "autoplay; fullscreen; clipboard-write");
        this.frame.setAttribute("allowfullscreen", "");
        this.frame.title = this.getAttribute("title") || "Live stream";
        shadow.append(style, this.frame);
      }
      this.update();
    }

    attributeChangedCallback() {
      if (this.frame) this.update();
    }

    update() {
      const query = new URLSearchParams({ apiKey: this.getAttribute("api-key") || "" });
      for (const name of ["autoplay", "muted", "tips"]) {
        if (OFF.has((this.getAttribute(name) || "").toLowerCase())) query.set(name, "0");
      }
      const height = Number.parseInt(this.getAttribute("height") || "", 10);
      this.style.height = height > 0 ? `${height}px` : "";
      const src = `${origin}/player?${query}`;
      if (this.frame.src !== src) this.frame.src = src;
    }
  }

  if (!customElements.get("simulcast-player")) customElements.define("simulcast-player", SimulcastPlayer);
})();
