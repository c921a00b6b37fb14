// The embeddable player: plays a self-hosted destination's HLS (with its rewind window) while the
// stream is live, shows an offline card otherwise, and switches between the two by itself.
"use strict";

(() => {
  const params = new URLSearchParams(window.location.search);
  const apiKey = params.get("apiKey") || "";
  const autoplay = params.get("autoplay") !== "0";
  const root = document.getElementById("player");
  const video = document.getElementById("video");
  const goLive = document.getElementById("go-live");
  const badge = document.getElementById("live-badge");
  const offline = document.getElementById("offline");
  const OFFLINE_POLL_MS = 10_000;
  const LIVE_POLL_MS = 30_000; // while playing, a failing playlist is the faster end signal
  const BEHIND_LIVE_S = 8;
  let hls = null;
  let playing = null;
  let timer = 0;
  // ?muted=0 starts with sound (browsers may then refuse autoplay); ?autoplay=0 waits for a click.
  video.muted = params.get("muted") !== "0";
  video.autoplay = autoplay;

  function show(state, title, text) {
    root.dataset.state = state;
    offline.hidden = state !== "offline";
    badge.hidden = state !== "live";
    if (title) document.getElementById("offline-title").textContent = title;
    if (text) document.getElementById("offline-text").textContent = text;
  }

  function stop() {
    if (hls) hls.destroy();
    hls = null;
    window.simulcastHls = null;
    playing = null;
    video.removeAttribute("src");
    video.load();
    goLive.hidden = true;
  }

  function play(url) {
    // Same origin as this page, whatever host the status answer names.
    const parsed = new URL(url, window.location.href);
    const src = parsed.pathname + parsed.search;
    show("live");
    if (src === playing) return;
    stop();
    playing = src;
    if (window.Hls && window.Hls.isSupported()) {
      // lowLatencyMode: parts and blocking reloads when the playlist offers them (LL-HLS),
      // regular segments otherwise. Playback may start up to a keyframe interval behind the
      // target latency (it starts on an independent part); a slightly faster rate catches up.
      hls = new window.Hls({
        liveDurationInfinity: true,
        backBufferLength: 90,
        lowLatencyMode: true,
        maxLiveSyncPlaybackRate: 1.25,
      });
      // The embedding page may read the playback state (e.g. hls.latency, hls.playingDate).
      window.simulcastHls = hls;
      hls.on(window.Hls.Events.ERROR, (_e, data) => {
        if (data.fatal || data.details === window.Hls.ErrorDetails.LEVEL_LOAD_ERROR) check(0);
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else {
      video.src = src; // Safari plays HLS natively
    }
    if (autoplay) video.play().catch(() => {});
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(check, ms);
  }

  async function check(delay) {
    if (delay === 0) return schedule(500); // debounce bursts of playlist errors
    let response;
    try {
      response = await fetch(`/api/public/stream/status?apiKey=${encodeURIComponent(apiKey)}`, {
        credentials: "omit",
        headers: { Accept: "application/json" },
      });
    } catch {
      return schedule(OFFLINE_POLL_MS);
    }
    if (response.status === 429) {
      const wait = Number(response.headers.get("Retry-After") || 10);
      return schedule(wait * 1000);
    }
    const status = await response.json().catch(() => null);
    if (!response.ok || !status) {
      stop();
      show("offline", "Stream unavailable", (status && status.error) || "This player's key is not valid.");
      return schedule(OFFLINE_POLL_MS * 3);
    }
    if (status.isLive && status.hlsReady && status.hlsUrl) {
      document.title = status.label || "Live stream";
      play(status.hlsUrl);
      return schedule(LIVE_POLL_MS);
    }
    stop();
    show(
      "offline",
      status.isLive ? "Starting…" : "Stream is offline",
      status.isLive ? "The stream is starting; it appears here in a moment." : "It starts here by itself when the broadcast begins.",
    );
    return schedule(status.isLive ? 2000 : OFFLINE_POLL_MS);
  }

  // "Go live" appears when the viewer rewound into the DVR window.
  video.addEventListener("timeupdate", () => {
    const edge = hls && hls.liveSyncPosition;
    goLive.hidden = !edge || edge - video.currentTime < BEHIND_LIVE_S;
  });
  goLive.addEventListener("click", () => {
    if (hls && hls.liveSyncPosition) video.currentTime = hls.liveSyncPosition;
    video.play().catch(() => {});
  });

  if (!apiKey) {
    show("offline", "No stream selected", "Add ?apiKey=pk_... (a self-hosted destination's public key).");
  } else {
    check();
  }
})();
