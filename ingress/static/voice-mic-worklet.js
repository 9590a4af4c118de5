// <voice-mic> capture worklet: microphone -> 16 kHz PCM16 frames of 20 ms, plus the input level.
//
// Runs on the audio rendering thread. The AudioContext runs at the device rate
// (44.1 or 48 kHz usually); each output sample is a windowed-sinc interpolation of the
// input at its fractional position, with the cutoff below the output Nyquist
// frequency (anti-aliasing low-pass and resampling in one step). Messages posted to the
// main thread: {pcm: ArrayBuffer (Int16, 320 samples), level: RMS 0..1}.

const OUT_RATE = 16000;
const FRAME = 320; // 20 ms at 16 kHz
const ZERO_CROSSINGS = 16; // kernel half-width, in output samples
const TABLE_RES = 128; // kernel table entries per input sample

class SincResampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    this.passthrough = inRate === outRate;
    // cutoff relative to the input rate's Nyquist frequency, a little under the output's
    const cutoff = Math.min(1, outRate / inRate) * 0.91;
    this.half = Math.ceil(ZERO_CROSSINGS / cutoff); // kernel half-width in input samples
    const n = this.half * TABLE_RES + 2;
    this.table = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const x = i / TABLE_RES; // distance in input samples
      const t = x * cutoff;
      const sinc = t === 0 ? 1 : Math.sin(Math.PI * t) / (Math.PI * t);
      const w = x >= this.half ? 0 : 0.42 + 0.5 * Math.cos((Math.PI * x) / this.half)
        + 0.08 * Math.cos((2 * Math.PI * x) / this.half); // Blackman
      this.table[i] = cutoff * sinc * w;
    }
    this.buf = new Float32Array(4096);
    this.len = this.half; // start with `half` zeros of history
    this.pos = this.half; // position of the next output sample in buf (fractional)
  }

  kernel(d) {
    const x = Math.abs(d) * TABLE_RES;
    const i = x | 0;
    const f = x - i;
    return this.table[i] * (1 - f) + this.table[i + 1] * f;
  }

  // Append input samples; return the output samples now computable.
  process(input) {
    if (this.passthrough) return Float32Array.from(input);
    if (this.len + input.length > this.buf.length) {
      const grown = new Float32Array((this.len + input.length) * 2);
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
    const out = [];
    const half = this.half;
    while (this.pos + half < this.len) {
      const p = this.pos;
      const first = Math.ceil(p - half);
      const last = Math.floor(p + half);
      let acc = 0;
      for (let k = first; k <= last; k++) acc += this.buf[k] * this.kernel(p - k);
      out.push(acc);
      this.pos += this.step;
    }
    // drop input no longer needed by the kernel
    const keep = Math.floor(this.pos - half);
    if (keep > 0) {
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.pos -= keep;
    }
    return out;
  }
}

class VoiceMicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new SincResampler(sampleRate, OUT_RATE);
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.energy = 0;
    this.count = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    let mono = channels[0];
    if (channels.length > 1) {
      mono = new Float32Array(channels[0].length);
      for (const ch of channels) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / channels.length;
    }
    const out = this.resampler.process(mono);
    for (let i = 0; i < out.length; i++) {
      const v = Math.max(-1, Math.min(1, out[i]));
      this.energy += v * v;
      this.count++;
      this.frame[this.filled++] = v < 0 ? v * 32768 : v * 32767;
      if (this.filled === FRAME) {
        const pcm = this.frame.buffer;
        const level = Math.sqrt(this.energy / this.count);
        this.port.postMessage({ pcm, level }, [pcm]);
        this.frame = new Int16Array(FRAME);
        this.filled = 0;
        this.energy = 0;
        this.count = 0;
      }
    }
    return true;
  }
}

registerProcessor("voice-mic-capture", VoiceMicCapture);
