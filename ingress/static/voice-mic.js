// <voice-mic>: a voice (and text) conversation with a voxbus ingress over /v1/stream (or WebRTC).
//
// Vanilla JS, an ES module, no build step, no network but the page's own origin.
//
//   <script type="module" src="/static/voice-mic.js"></script>
//   <voice-mic mode="push-to-talk" assistant-name="Harbor Mobile"></voice-mic>
//
// Attributes
//   transport       "websocket" (default: JSON + PCM16 frames on /v1/stream) or "webrtc" (Opus over
//                   RTP, the same JSON events on a data channel; signalled by POST /v1/webrtc)
//   url             WebSocket URL (default: ws[s]://<this host>/v1/stream), or with transport="webrtc"
//                   the signalling URL (default: <this origin>/v1/webrtc)
//   ice-servers     transport="webrtc": JSON list of RTCIceServer ({urls, username, credential}) for
//                   networks that need STUN/TURN; default none (host candidates only)
//   api-key         sent as ?api_key=      token   a JWT, sent as ?access_token=
//   mode            "push-to-talk" (default: stream only while the mic is held) or
//                   "hands-free" (stream continuously; the server's VAD finds the turns)
//   assistant-name  label of the replies ("Assistant")
//   lang            the caller's language, a BCP-47 tag ("es", "es-MX") or "auto" (detected on the first
//                   utterance); default: the nearest lang attribute (the page's <html lang>), else English
//   no-autoconnect  do not open the socket before the first interaction
//
// State (host attribute data-state, event "voice-state"): connecting, ready, listening,
// thinking, speaking, reconnecting, disconnected, error. Every server event is re-dispatched
// as a "voice-event" CustomEvent (detail = the JSON event). Counters for tests and dashboards:
// data-chunks-scheduled / data-chunks-played (reply audio chunks queued / played to the end),
// data-frames-sent (20 ms mic frames sent), data-mic (off | on | denied | unsupported),
// data-session-id, data-first-audio-ms (end of the caller's turn to first reply audio). With
// transport="webrtc", a chunk counts as played when the ingress reports it sent (reply_played), and
// the element's remoteStream property is the reply audio the page plays.

import { RtcLink } from "./voice-mic-webrtc.js";

const WORKLET_URL = new URL("./voice-mic-worklet.js", import.meta.url);
const BUS_RATE = 16000;
const PTT_TAIL_MS = 800; // silence sent after push-to-talk release so the server's VAD ends the turn
const LEVEL_SPEAKING = 0.02; // local RMS above which the speaking indicator lights
const FATAL = new Set([1009, 4400, 4401, 4403, 4413]);
const STATE_LABELS = {
  connecting: "Connecting…",
  ready: "Ready",
  listening: "Listening…",
  thinking: "Thinking…",
  speaking: "Speaking…",
  reconnecting: "Reconnecting…",
  disconnected: "Disconnected",
  error: "Error",
};

const TEMPLATE = document.createElement("template");
TEMPLATE.innerHTML = `
<style>
  :host { display: block; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
          color: var(--vm-fg, #0f2a3d); --vm-accent: #0b6e99; --vm-accent-2: #12a37f; --vm-bad: #b3261e; }
  .card { background: var(--vm-bg, #fff); border-radius: 16px; box-shadow: 0 2px 14px rgba(15,42,61,.12);
          padding: 20px; display: grid; gap: 14px; }
  .top { display: grid; grid-template-columns: auto 1fr; gap: 16px; align-items: center; }
  .mic { width: 76px; height: 76px; border-radius: 50%; border: 0; cursor: pointer; position: relative;
         background: var(--vm-accent); color: #fff; display: grid; place-items: center; touch-action: none;
         transition: transform .08s, background .2s; }
  .mic:focus-visible { outline: 3px solid #f2b705; outline-offset: 3px; }
  .mic[aria-pressed="true"] { background: var(--vm-accent-2); transform: scale(1.06); }
  .mic:disabled { background: #9aa7b0; cursor: not-allowed; }
  .mic svg { width: 34px; height: 34px; }
  .mic .ring { position: absolute; inset: -6px; border-radius: 50%; border: 3px solid transparent; }
  :host([data-speaking-local]) .mic .ring { border-color: rgba(18,163,127,.45); }
  :host([data-speaking-vad]) .mic .ring { border-color: var(--vm-accent-2); animation: pulse 1s infinite; }
  @keyframes pulse { 50% { inset: -10px; opacity: .6; } }
  .meter { display: grid; gap: 6px; }
  canvas { width: 100%; height: 56px; background: #f1f6f9; border-radius: 10px; }
  .status { display: flex; align-items: center; gap: 8px; font-weight: 600; }
  .dot { width: 10px; height: 10px; border-radius: 50%; background: #9aa7b0; }
  :host([data-state="ready"]) .dot, :host([data-state="listening"]) .dot { background: var(--vm-accent-2); }
  :host([data-state="thinking"]) .dot { background: #f2b705; }
  :host([data-state="speaking"]) .dot { background: var(--vm-accent); }
  :host([data-state="error"]) .dot { background: var(--vm-bad); }
  :host([data-state="connecting"]) .dot, :host([data-state="reconnecting"]) .dot { background: #f2b705;
          animation: blink 1s infinite; }
  @keyframes blink { 50% { opacity: .3; } }
  .you-speak { font-size: .85em; color: #51636f; font-weight: 400; }
  .modes { display: flex; gap: 16px; font-size: .92em; border: 0; margin: 0; padding: 0; }
  .modes legend { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  .log { min-height: 120px; max-height: 340px; overflow-y: auto; display: grid; gap: 8px; align-content: start;
         padding: 4px 2px; }
  .msg { padding: 8px 12px; border-radius: 12px; max-width: 85%; white-space: pre-wrap; }
  .msg.you { background: #e3f1f8; justify-self: end; }
  .msg.bot { background: #eaf7f2; justify-self: start; }
  .msg .who { display: block; font-size: .75em; font-weight: 700; color: #51636f; }
  .msg .tag { font-size: .75em; color: #51636f; margin-left: 6px; }
  .msg.cut .text::after { content: " — interrupted"; color: #51636f; font-style: italic; }
  .msg .cites { display: block; font-size: .75em; color: #51636f; margin-top: 4px; }
  form { display: flex; gap: 8px; }
  input[type=text] { flex: 1; font: inherit; padding: 9px 12px; border-radius: 10px; border: 1px solid #b7c5ce; }
  input[type=text]:focus-visible, button:focus-visible, input[type=radio]:focus-visible { outline: 3px solid #f2b705; }
  form button { font: inherit; border: 0; border-radius: 10px; padding: 9px 16px; background: var(--vm-accent);
                color: #fff; cursor: pointer; }
  .notice { margin: 0; padding: 8px 12px; border-radius: 10px; background: #fff4e5; color: #6a4a00; }
  .notice[data-kind="error"] { background: #fdecea; color: var(--vm-bad); }
  .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
</style>
<div class="card" part="card">
  <div class="top">
    <button class="mic" type="button" aria-pressed="false" aria-keyshortcuts="Space" aria-label="Hold to talk">
      <span class="ring" aria-hidden="true"></span>
      <svg viewBox="0 0 24 24" aria-hidden="true" fill="currentColor"><path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.92V21h2v-3.08A7 7 0 0 0 19 11h-2z"/></svg>
    </button>
    <div class="meter">
      <div class="status" role="status" aria-live="polite"><span class="dot" aria-hidden="true"></span>
        <span class="label">Connecting…</span> <span class="you-speak" aria-hidden="true"></span></div>
      <canvas class="wave" width="600" height="56" aria-hidden="true"></canvas>
      <fieldset class="modes" role="radiogroup"><legend>Microphone mode</legend>
        <label><input type="radio" name="mode" value="push-to-talk"> Push to talk</label>
        <label><input type="radio" name="mode" value="hands-free"> Hands-free</label>
      </fieldset>
    </div>
  </div>
  <p class="notice" hidden></p>
  <div class="log" role="log" aria-live="polite" aria-label="Conversation transcript"></div>
  <form class="text-form">
    <label class="sr" for="vm-text">Type a message</label>
    <input id="vm-text" class="text" type="text" maxlength="2000" autocomplete="off"
           placeholder="Type your question instead…">
    <button type="submit">Send</button>
  </form>
</div>`;

export class VoiceMic extends HTMLElement {
  static get observedAttributes() { return ["mode"]; }

  constructor() {
    super();
    this.attachShadow({ mode: "open" }).appendChild(TEMPLATE.content.cloneNode(true));
    const $ = (s) => this.shadowRoot.querySelector(s);
    this.ui = { mic: $(".mic"), label: $(".label"), youSpeak: $(".you-speak"), canvas: $(".wave"),
                log: $(".log"), form: $(".text-form"), text: $(".text"), notice: $(".notice"),
                modes: [...this.shadowRoot.querySelectorAll("input[name=mode]")] };
    this.ws = null;
    this.sessionId = null;
    this.retries = 0;
    this.retryTimer = null;
    this.phase = "connecting"; // connection phase: connecting | open | reconnecting | disconnected | error
    this.streaming = false; // mic frames go to the server
    this.thinking = false;
    this.userSpeaking = false;
    this.level = 0;
    this.pendingAudio = null;
    this.queuedTexts = [];
    this.ctx = null;
    this.sources = new Set();
    this.playhead = 0;
    this.mutedTurns = new Set();
    this.entries = new Map(); // turn_id -> {you, bot}
    this.pendingTextTurns = new Set();
    this.turnEndAt = null;
    this.backlog = []; // mic frames captured while (re)connecting, sent once the session is ready
    this.counters = { chunksScheduled: 0, chunksPlayed: 0, framesSent: 0 };
    this.micState = "off";
    this.rtcQueued = new Map(); // transport="webrtc": turn_id -> reply chunks announced, not yet played
  }

  get mode() { return this.getAttribute("mode") === "hands-free" ? "hands-free" : "push-to-talk"; }
  set mode(value) { this.setAttribute("mode", value); }
  get state() { return this.dataset.state; }
  get transport() { return this.getAttribute("transport") === "webrtc" ? "webrtc" : "websocket"; }
  get remoteStream() { return (this.ws && this.ws.stream) || null; }
  // the start message's language: this element's lang, else the nearest ancestor's (the page's <html lang>)
  get language() { const el = this.closest("[lang]"); return (el && el.getAttribute("lang")) || ""; }

  connectedCallback() {
    const ui = this.ui;
    this.syncMode();
    ui.modes.forEach((r) => r.addEventListener("change", () => { if (r.checked) this.mode = r.value; }));
    ui.mic.addEventListener("pointerdown", (e) => { e.preventDefault(); ui.mic.focus(); this.press(); });
    ui.mic.addEventListener("pointerup", () => this.release());
    ui.mic.addEventListener("pointerleave", () => this.release());
    ui.mic.addEventListener("pointercancel", () => this.release());
    ui.mic.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); this.toggle(); } });
    ui.form.addEventListener("submit", (e) => { e.preventDefault(); this.submitText(); });
    this.onKeyDown = (e) => this.handleKey(e, true);
    this.onKeyUp = (e) => this.handleKey(e, false);
    window.addEventListener("keydown", this.onKeyDown);
    window.addEventListener("keyup", this.onKeyUp);
    this.updateCounters();
    this.refresh();
    if (!this.hasAttribute("no-autoconnect")) setTimeout(() => { if (!this.ws) this.connect(); }, 0);
    this.draw();
  }

  disconnectedCallback() {
    window.removeEventListener("keydown", this.onKeyDown);
    window.removeEventListener("keyup", this.onKeyUp);
    this.hangUp();
  }

  attributeChangedCallback(name) {
    if (name === "mode" && this.ui) {
      this.syncMode();
      if (this.mode === "push-to-talk" && this.streaming && !this.held) this.stopStreaming(true);
      this.refresh();
    }
  }

  syncMode() {
    if (!this.ui) return;
    this.ui.modes.forEach((r) => { r.checked = r.value === this.mode; });
    this.ui.mic.setAttribute("aria-label", this.mode === "hands-free"
      ? "Microphone on or off (Space)" : "Hold to talk (Space)");
  }

  // -- connection ---------------------------------------------------------------------
  socketUrl() {
    const rtc = this.transport === "webrtc";
    const base = this.getAttribute("url") || (rtc ? `${location.origin}/v1/webrtc`
      : `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`);
    const url = new URL(base, location.href);
    if (this.getAttribute("api-key")) url.searchParams.set("api_key", this.getAttribute("api-key"));
    if (this.getAttribute("token")) url.searchParams.set("access_token", this.getAttribute("token"));
    if (rtc && this.sessionId) url.searchParams.set("session_id", this.sessionId); // the start message's field
    if (rtc && this.language) url.searchParams.set("language", this.language);
    return url.toString();
  }

  iceServers() {
    try { return JSON.parse(this.getAttribute("ice-servers") || "[]"); } catch { return []; }
  }

  micTrack() { return (this.stream && this.stream.getAudioTracks()[0]) || null; }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.ws && (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING)) return;
    this.phase = this.retries > 0 ? "reconnecting" : "connecting";
    this.refresh();
    const rtc = this.transport === "webrtc";
    const ws = rtc
      ? new RtcLink(this.socketUrl(), { iceServers: this.iceServers(), microphone: this.micTrack() })
      : new WebSocket(this.socketUrl());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = false;
    ws.onopen = () => {
      if (rtc) return; // the start message's fields went with the offer
      const start = { type: "start", sample_rate: BUS_RATE, encoding: "pcm_s16le" };
      if (this.sessionId) start.session_id = this.sessionId;
      if (this.language) start.language = this.language;
      ws.send(JSON.stringify(start));
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") this.onEvent(JSON.parse(e.data));
      else this.onAudio(e.data);
    };
    ws.onclose = (e) => { if (this.ws === ws) this.onClose(e); };
  }

  hangUp() {
    clearTimeout(this.retryTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
      ws.close(1000);
    }
    this.stopStreaming();
    this.stopPlayback();
  }

  onClose(e) {
    this.ws = null;
    this.ready = false;
    this.pendingAudio = null;
    this.thinking = false;
    this.userSpeaking = false;
    const reason = e.reason || `connection closed (${e.code})`;
    if (FATAL.has(e.code)) {
      this.phase = "error";
      this.showNotice(this.explain(e.code, reason), "error");
    } else if (e.code === 4408 || e.code === 4409) {
      this.phase = "disconnected";
      this.showNotice(e.code === 4408 ? "Disconnected after a quiet while. Press the mic or type to continue."
        : "This conversation continued in another window.", "info");
      this.stopStreaming();
    } else {
      this.retries += 1;
      const delay = e.code === 4429 ? 5000 * this.retries
        : Math.min(10000, 500 * 2 ** Math.min(this.retries - 1, 5));
      this.phase = "reconnecting";
      this.showNotice(`Connection lost (${reason}). Reconnecting…`, "info");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }
    this.refresh();
  }

  explain(code, reason) {
    const why = {
      4401: "Not signed in: the voice service needs a valid key or token.",
      4403: "Not allowed to use this voice service from here.",
      4413: "This conversation reached its maximum length.",
      1009: "A message was too large for the voice service.",
    }[code] || "The voice service refused the conversation.";
    return `${why} (${reason})`;
  }

  ensureConnected() {
    if (!this.ws) { this.retries = 0; this.connect(); }
  }

  send(data) {
    if (this.ws && this.ready && this.ws.readyState === WebSocket.OPEN) { this.ws.send(data); return true; }
    return false;
  }

  // -- server events ----------------------------------------------------------------------
  onEvent(ev) {
    this.dispatchEvent(new CustomEvent("voice-event", { detail: ev }));
    switch (ev.type) {
      case "ready":
        this.ready = true;
        this.sessionId = ev.session_id;
        this.dataset.sessionId = ev.session_id;
        this.phase = "open";
        if (this.retries) this.hideNotice();
        this.retries = 0;
        for (const text of this.queuedTexts.splice(0)) this.send(JSON.stringify({ type: "text", text }));
        for (const frame of this.backlog.splice(0)) this.sendFrame(frame);
        break;
      case "speech_started":
        this.userSpeaking = true;
        break;
      case "speech_ended":
        this.userSpeaking = false;
        this.turnEndAt = performance.now();
        this.turnEndFor = ev.turn_id;
        this.thinking = true;
        break;
      case "transcript":
        this.addYou(ev.turn_id, ev.text, ev.source);
        this.thinking = true;
        break;
      case "intent": {
        const entry = this.claimTextTurn(ev.turn_id);
        if (entry.you) entry.you.querySelector(".tag").textContent = ev.intent.replace(/_/g, " ");
        break;
      }
      case "reply_text":
        this.claimTextTurn(ev.turn_id);
        if (ev.text) this.addBot(ev.turn_id, ev.text);
        if (ev.sources && ev.sources.length) this.addCites(ev.turn_id, ev.sources);
        if (ev.final && !this.sources.size && this.pendingTextTurns.has(ev.turn_id)) this.thinking = false;
        break;
      case "reply_audio":
        if (this.transport === "webrtc") this.onRtcAudio(ev);
        else this.pendingAudio = ev.bytes > 0 ? ev : null;
        break;
      case "reply_played": // transport="webrtc": a chunk announced by reply_audio went out to the page
        if (this.rtcQueued.get(ev.turn_id) > 0) {
          this.rtcQueued.set(ev.turn_id, this.rtcQueued.get(ev.turn_id) - 1);
          this.counters.chunksPlayed += 1;
          this.updateCounters();
        }
        break;
      case "playback_stop":
        this.stopPlayback();
        break;
      case "turn_end":
        this.thinking = false;
        if (ev.turn_id === this.turnEndFor) this.turnEndAt = null;
        if (ev.interrupted) {
          const entry = this.entries.get(ev.turn_id);
          if (entry && entry.bot) entry.bot.classList.add("cut");
        }
        break;
      case "error":
        if (!ev.close_code) this.showNotice(`${ev.message} (${ev.code})`, "info");
        if (ev.turn_id) this.thinking = false;
        break;
      default:
        break;
    }
    this.refresh();
  }

  addYou(turnId, text, source) {
    if (!text) return;
    let node = null;
    if (source === "text") {
      node = [...this.ui.log.querySelectorAll(".msg.you[data-pending]")].find((n) => n.dataset.text === text);
      if (node) delete node.dataset.pending;
    }
    node = node || this.appendMessage("you", "You", text);
    node.dataset.turnId = turnId;
    this.entry(turnId).you = node;
  }

  addBot(turnId, text) {
    const entry = this.entry(turnId);
    if (!entry.bot) {
      entry.bot = this.appendMessage("bot", this.getAttribute("assistant-name") || "Assistant", "");
      entry.bot.dataset.turnId = turnId;
    }
    const span = entry.bot.querySelector(".text");
    span.textContent = span.textContent ? `${span.textContent} ${text}` : text;
    this.ui.log.scrollTop = this.ui.log.scrollHeight;
  }

  // The knowledge-base files a reply is grounded on, under it ("Source: billing.md"), each once.
  addCites(turnId, files) {
    const entry = this.entry(turnId);
    if (!entry.bot) return;
    const cited = new Set([...(entry.cited || []), ...files]);
    entry.cited = [...cited];
    let node = entry.bot.querySelector(".cites");
    if (!node) {
      node = document.createElement("span");
      node.className = "cites";
      entry.bot.appendChild(node);
    }
    node.textContent = `${entry.cited.length > 1 ? "Sources" : "Source"}: ${entry.cited.join(", ")}`;
  }

  // A typed turn gets its id from the server's first event about it (text turns have no transcript event).
  claimTextTurn(turnId) {
    const entry = this.entry(turnId);
    if (!entry.you) {
      const pending = this.ui.log.querySelector(".msg.you[data-pending]");
      if (pending) {
        delete pending.dataset.pending;
        pending.dataset.turnId = turnId;
        entry.you = pending;
        this.pendingTextTurns.add(turnId);
      }
    }
    return entry;
  }

  entry(turnId) {
    if (!this.entries.has(turnId)) this.entries.set(turnId, {});
    return this.entries.get(turnId);
  }

  appendMessage(kind, who, text) {
    const node = document.createElement("div");
    node.className = `msg ${kind}`;
    node.innerHTML = '<span class="who"></span><span class="text"></span><span class="tag"></span>';
    node.querySelector(".who").textContent = who;
    node.querySelector(".text").textContent = text;
    this.ui.log.appendChild(node);
    this.ui.log.scrollTop = this.ui.log.scrollHeight;
    return node;
  }

  // -- reply audio ------------------------------------------------------------------------
  onAudio(buffer) {
    const header = this.pendingAudio;
    this.pendingAudio = null;
    if (!header || this.mutedTurns.has(header.turn_id)) return;
    const ctx = this.audioContext();
    const view = new DataView(buffer);
    const n = buffer.byteLength >> 1;
    const audio = ctx.createBuffer(1, n, header.sample_rate);
    const channel = audio.getChannelData(0);
    for (let i = 0; i < n; i++) channel[i] = view.getInt16(2 * i, true) / 32768;
    const source = ctx.createBufferSource();
    source.buffer = audio;
    source.connect(ctx.destination);
    const at = Math.max(ctx.currentTime + 0.02, this.playhead);
    source.start(at);
    this.playhead = at + audio.duration;
    this.sources.add(source);
    if (this.turnEndAt !== null) {
      this.dataset.firstAudioMs = String(Math.round(performance.now() - this.turnEndAt));
      this.turnEndAt = null;
    }
    this.thinking = false;
    this.counters.chunksScheduled += 1;
    source.onended = () => {
      if (!this.sources.delete(source)) return;
      if (!source.stopped) this.counters.chunksPlayed += 1;
      this.updateCounters();
      this.refresh();
    };
    this.updateCounters();
    this.refresh();
  }

  // transport="webrtc": the audio itself comes on the reply track; this is its announcement.
  onRtcAudio(ev) {
    if (!ev.bytes || this.mutedTurns.has(ev.turn_id)) return;
    if (this.ws && this.ws.mute) this.ws.mute(false);
    this.rtcQueued.set(ev.turn_id, (this.rtcQueued.get(ev.turn_id) || 0) + 1);
    if (this.turnEndAt !== null) {
      this.dataset.firstAudioMs = String(Math.round(performance.now() - this.turnEndAt));
      this.turnEndAt = null;
    }
    this.thinking = false;
    this.counters.chunksScheduled += 1;
    this.updateCounters();
  }

  rtcPlaying() {
    for (const n of this.rtcQueued.values()) if (n > 0) return true;
    return false;
  }

  audioContext() {
    if (!this.ctx) this.ctx = new AudioContext({ latencyHint: "interactive" });
    if (this.ctx.state === "suspended") this.ctx.resume();
    return this.ctx;
  }

  // Stop reply audio now and drop what is queued (barge-in).
  stopPlayback() {
    for (const source of this.sources) {
      source.stopped = true;
      try { source.stop(); } catch { /* not started */ }
    }
    this.sources.clear();
    this.playhead = 0;
    this.rtcQueued.clear();
    this.refresh();
  }

  // -- microphone ---------------------------------------------------------------------------
  async startMic() {
    if (this.micReady) return this.micReady;
    this.micReady = (async () => {
      if (!navigator.mediaDevices || !window.AudioWorkletNode) {
        this.micUnavailable("unsupported", "This browser cannot capture audio here");
        return false;
      }
      try {
        const ctx = this.audioContext();
        await ctx.audioWorklet.addModule(WORKLET_URL);
        const stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
        const source = ctx.createMediaStreamSource(stream);
        const node = new AudioWorkletNode(ctx, "voice-mic-capture", { numberOfInputs: 1, numberOfOutputs: 0 });
        node.port.onmessage = (e) => this.onFrame(e.data);
        source.connect(node);
        this.analyser = ctx.createAnalyser();
        this.analyser.fftSize = 1024;
        source.connect(this.analyser);
        this.stream = stream;
        if (this.transport === "webrtc") {
          stream.getAudioTracks()[0].enabled = this.streaming; // off: silence goes out
          if (this.ws && this.ws.setMicrophone) await this.ws.setMicrophone(this.micTrack());
        }
        this.micState = "on";
        this.updateCounters();
        return true;
      } catch (err) {
        const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
        this.micUnavailable(denied ? "denied" : "unsupported",
          denied ? "Microphone access was denied" : `The microphone could not start (${err && err.message})`);
        return false;
      }
    })();
    return this.micReady;
  }

  micUnavailable(state, why) {
    this.micState = state;
    this.ui.mic.disabled = true;
    this.streaming = false;
    this.showNotice(`${why}. You can type your question below instead.`, "info");
    this.updateCounters();
    this.refresh();
    this.ui.text.focus();
  }

  onFrame({ pcm, level }) {
    this.level = level;
    const local = this.streaming && level > LEVEL_SPEAKING;
    this.toggleAttribute("data-speaking-local", local);
    if (!this.streaming) return;
    if (this.transport === "webrtc") { // the track carries the audio; count its 20 ms frames
      this.counters.framesSent += 1;
      if (this.counters.framesSent % 25 === 0) this.updateCounters();
      return;
    }
    if (this.ready) this.sendFrame(pcm);
    else if (this.backlog.push(pcm) > 100) this.backlog.shift(); // keep the last 2 s
  }

  sendFrame(pcm) {
    if (this.send(pcm)) {
      this.counters.framesSent += 1;
      if (this.counters.framesSent % 25 === 0) this.updateCounters();
    }
  }

  // The mic button / Space: hold (push-to-talk) or toggle (hands-free).
  async press() {
    this.ensureConnected();
    this.held = true;
    if (this.sources.size || this.rtcPlaying()) { // talking over the assistant: stop it here at once
      for (const [turnId, entry] of this.entries) if (entry.bot) this.mutedTurns.add(turnId);
      if (this.ws && this.ws.mute) this.ws.mute(true);
      this.stopPlayback();
    }
    if (!(await this.startMic())) return;
    if (this.mode === "hands-free") {
      if (this.streaming) this.stopStreaming(); else this.startStreaming();
    } else if (this.held) {
      this.startStreaming();
    }
  }

  release() {
    if (!this.held) return;
    this.held = false;
    if (this.mode === "push-to-talk" && this.streaming) this.stopStreaming(true);
  }

  toggle() {
    if (this.mode === "hands-free") { this.press(); this.held = false; } else if (this.streaming) this.release();
    else this.press();
  }

  startStreaming() {
    this.streaming = true;
    if (this.transport === "webrtc" && this.micTrack()) this.micTrack().enabled = true;
    this.ui.mic.setAttribute("aria-pressed", "true");
    this.refresh();
  }

  stopStreaming(tail = false) {
    this.streaming = false;
    if (this.transport === "webrtc") {
      if (this.micTrack()) this.micTrack().enabled = false; // a muted track sends silence: VAD ends the turn
      tail = false;
    }
    if (!tail) this.backlog.length = 0;
    this.ui.mic.setAttribute("aria-pressed", "false");
    this.toggleAttribute("data-speaking-local", false);
    if (tail) {
      const silence = new Int16Array((BUS_RATE * PTT_TAIL_MS) / 1000).buffer;
      if (this.ready) this.send(silence); else this.backlog.push(silence);
    }
    this.refresh();
  }

  handleKey(e, down) {
    if (e.code !== "Space" && e.key !== " ") return;
    const target = e.composedPath()[0];
    const tag = target && target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    if (tag === "BUTTON" && target !== this.ui.mic) return;
    if (this.ui.mic.disabled) return;
    e.preventDefault();
    if (e.repeat) return;
    if (this.mode === "hands-free") { if (down) { this.press(); this.held = false; } }
    else if (down) this.press(); else this.release();
  }

  // -- text fallback --------------------------------------------------------------------------
  submitText() {
    const text = this.ui.text.value.trim();
    if (!text) return;
    this.ui.text.value = "";
    this.sendText(text);
  }

  sendText(text) {
    const node = this.appendMessage("you", "You", text);
    node.dataset.pending = "";
    node.dataset.text = text;
    this.thinking = true;
    this.turnEndAt = performance.now();
    this.turnEndFor = null;
    if (this.ctx && this.ctx.state === "suspended") this.ctx.resume();
    if (!this.send(JSON.stringify({ type: "text", text }))) {
      this.queuedTexts.push(text);
      this.ensureConnected();
    }
    this.refresh();
  }

  // -- view ------------------------------------------------------------------------------------
  computeState() {
    if (this.phase !== "open") return this.phase;
    if (this.sources.size || this.rtcPlaying()) return "speaking";
    if (this.thinking) return "thinking";
    if (this.streaming) return "listening";
    return "ready";
  }

  refresh() {
    const state = this.computeState();
    this.toggleAttribute("data-speaking-vad", this.userSpeaking);
    this.ui.youSpeak.textContent = this.userSpeaking ? "· you are speaking" : "";
    const changed = state !== this.dataset.state;
    this.dataset.state = state;
    let label = STATE_LABELS[state];
    if (state === "ready") {
      if (this.micState === "denied" || this.micState === "unsupported") label = "Ready — type your question";
      else if (this.mode === "hands-free") label = "Ready — press the mic (or Space) to start";
      else label = "Ready — hold the mic (or Space) to talk";
    }
    if (this.ui.label.textContent !== label) this.ui.label.textContent = label;
    if (changed) this.dispatchEvent(new CustomEvent("voice-state", { detail: { state } }));
  }

  updateCounters() {
    this.dataset.chunksScheduled = String(this.counters.chunksScheduled);
    this.dataset.chunksPlayed = String(this.counters.chunksPlayed);
    this.dataset.framesSent = String(this.counters.framesSent);
    this.dataset.mic = this.micState;
  }

  showNotice(text, kind) {
    this.ui.notice.textContent = text;
    this.ui.notice.dataset.kind = kind;
    this.ui.notice.hidden = false;
  }

  hideNotice() { this.ui.notice.hidden = true; }

  draw(now = 0) {
    if (!this.isConnected) return;
    requestAnimationFrame((t) => this.draw(t));
    if (now - (this.drawnAt || 0) < 33) return; // ~30 frames a second is enough
    this.drawnAt = now;
    if (!this.analyser && this.drewIdle) return;
    this.drewIdle = !this.analyser;
    const canvas = this.ui.canvas;
    const g = canvas.getContext("2d");
    const { width, height } = canvas;
    g.clearRect(0, 0, width, height);
    g.lineWidth = 2;
    g.strokeStyle = this.userSpeaking ? "#12a37f" : this.streaming ? "#0b6e99" : "#9aa7b0";
    g.beginPath();
    if (this.analyser) {
      const data = this.waveData || (this.waveData = new Float32Array(this.analyser.fftSize));
      this.analyser.getFloatTimeDomainData(data);
      const gain = this.streaming ? 1 : 0.25;
      for (let i = 0; i < data.length; i++) {
        const x = (i / (data.length - 1)) * width;
        const y = height / 2 - Math.max(-1, Math.min(1, data[i] * 3 * gain)) * (height / 2 - 2);
        if (i) g.lineTo(x, y); else g.moveTo(x, y);
      }
    } else {
      g.moveTo(0, height / 2);
      g.lineTo(width, height / 2);
    }
    g.stroke();
  }
}

if (!customElements.get("voice-mic")) customElements.define("voice-mic", VoiceMic);
