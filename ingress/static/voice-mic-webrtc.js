// <voice-mic transport="webrtc">: the call as a WebRTC peer connection, behind a WebSocket-like face.
//
// Signalling is WHIP-style: one POST of the SDP offer (every host candidate in it, no trickle) to
// /v1/webrtc, authenticated like the socket (?api_key= / ?access_token=), answered with the SDP
// answer. The microphone goes out as an Opus track (the browser's echo cancellation, noise
// suppression and gain control apply: getUserMedia's constraints in voice-mic.js); the replies come
// back as an Opus track played by an <audio> element (the echo canceller's reference). The caller
// protocol's JSON events travel on the "voxbus" data channel, so the component reads them as it
// reads the socket's: readyState, send(text), close(code), onopen / onmessage / onclose.

const SIGNAL_TIMEOUT_MS = 5000; // longest wait for ICE gathering before the offer is sent as it is

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); } };
    const timer = setTimeout(resolve, SIGNAL_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

export class RtcLink {
  // url: the signalling endpoint (with credentials and session_id as query parameters);
  // iceServers: RTCIceServer objects (none: host candidates only); microphone: a track, or null.
  constructor(url, { iceServers = [], microphone = null } = {}) {
    this.readyState = 0; // WebSocket's numbers: 0 connecting, 1 open, 3 closed
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.stream = null; // the reply audio, once it arrives
    this.closeInfo = null; // the ingress's "close" event, if it sent one
    this.pc = new RTCPeerConnection({ iceServers });
    this.channel = this.pc.createDataChannel("voxbus", { ordered: true });
    this.sender = this.pc.addTransceiver("audio", { direction: "sendrecv" }).sender;
    if (microphone) this.sender.replaceTrack(microphone);
    this.audio = new Audio();
    this.audio.autoplay = true;
    this.pc.ontrack = (e) => {
      this.stream = e.streams[0] || new MediaStream([e.track]);
      this.audio.srcObject = this.stream;
      this.audio.play().catch(() => { /* autoplay refused: the first gesture resumes it */ });
    };
    this.channel.onopen = () => { this.readyState = 1; if (this.onopen) this.onopen(); };
    this.channel.onmessage = (e) => {
      const ev = JSON.parse(e.data);
      if (ev.type === "close") this.closeInfo = { code: ev.code, reason: ev.reason };
      if (this.onmessage) this.onmessage({ data: e.data });
    };
    this.channel.onclose = () => this.finish(this.closeInfo || { code: 1006, reason: "the call ended" });
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === "failed") this.finish({ code: 1006, reason: "the connection failed" });
    };
    this.negotiate(url).catch((err) => this.finish({ code: 1006, reason: String((err && err.message) || err) }));
  }

  async negotiate(url) {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await gathered(this.pc);
    if (this.readyState === 3) return;
    const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" },
                                   body: this.pc.localDescription.sdp });
    if (!res.ok) {
      const err = await res.json().catch(() => ({}));
      this.finish({ code: err.close_code || 1006,
                    reason: err.code ? `${err.code}: ${err.message}` : `HTTP ${res.status}` });
      return;
    }
    const answer = await res.text();
    if (this.readyState !== 3) await this.pc.setRemoteDescription({ type: "answer", sdp: answer });
  }

  // Text only: audio goes over RTP.
  send(data) {
    if (this.readyState === 1 && typeof data === "string") this.channel.send(data);
  }

  setMicrophone(track) { return this.sender.replaceTrack(track); }

  // Mute the reply audio here (the caller talks over it) until the next reply.
  mute(muted) { this.audio.muted = muted; }

  close(code = 1000, reason = "") { this.finish({ code, reason }, false); }

  finish(info, notify = true) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    try { this.channel.close(); } catch { /* already closed */ }
    this.pc.close();
    this.audio.srcObject = null;
    if (notify && this.onclose) this.onclose(info);
  }
}
