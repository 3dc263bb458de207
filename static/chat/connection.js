// One WebSocket to /ws/ that keeps itself alive.
//
// - States: "connecting" (a socket is opening), "online" (the server said
//   hello), "offline" (no socket; a reconnect is scheduled).
// - On every open, the FIRST frame sent is `resume` with the last seq seen
//   per room (asked from `getResume()` at that moment), so the server replays
//   whatever was missed while the socket was down, before any live message.
// - Reconnects back off exponentially (0.5 s, 1 s, 2 s … up to 15 s) with
//   jitter, so a restarted server is not hit by every tab at the same instant.
// - A heartbeat (`ping` every 20 s) detects a socket that died silently
//   (a network drop without a close): no frame for 45 s means dead.

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 20000;
const DEAD_AFTER_MS = 45000;
const CONNECT_TIMEOUT_MS = 10000;
const CLOSE_UNAUTHENTICATED = 4001;

export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  // "Equal jitter": between half and all of the exponential step.
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export class Connection {
  constructor({ url, getResume, onFrame, onState, onUnauthenticated }) {
    this.url = url;
    this.getResume = getResume;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onUnauthenticated = onUnauthenticated;
    this.ws = null;
    this.state = "connecting";
    this.attempt = 0;
    this.retryAt = null;
    this.retryTimer = null;
    this.heartbeat = null;
    this.lastFrameAt = 0;
    this.stopped = false;

    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.drop());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.state === "offline") this.reconnectNow();
    });
    // Leaving the page is not a network failure: don't flash "offline".
    window.addEventListener("pagehide", () => this.stop());
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) this.start();
    });
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.state === "online";
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.teardown();
  }

  setState(state) {
    this.state = state;
    this.onState(state, this);
  }

  open() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    // A handshake that hangs (a black-holed network) counts as a failure.
    this.connectTimer = setTimeout(() => {
      if (ws === this.ws && this.state === "connecting") this.closed(1006);
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      // First frame, always: what we have, so the replay fills the gap.
      ws.send(JSON.stringify({ type: "resume", rooms: this.getResume() }));
      this.startHeartbeat();
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || typeof frame !== "object") return;
      if (frame.type === "hello") {
        this.attempt = 0;
        this.setState("online");
      }
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.closed(event.code);
    };
    ws.onerror = () => {
      // A close event always follows; nothing to do here.
    };
  }

  closed(code) {
    this.teardown();
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHENTICATED) {
      this.setState("offline");
      this.onUnauthenticated();
      return;
    }
    this.scheduleReconnect();
  }

  teardown() {
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeat);
    this.heartbeat = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
        try {
          ws.close();
        } catch {
          /* already closing */
        }
      }
    }
  }

  scheduleReconnect() {
    this.attempt += 1;
    const delay = backoffDelay(this.attempt);
    this.retryAt = Date.now() + delay;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
    this.setState("offline");
  }

  // The network came back, or the user asked: try at once.
  reconnectNow() {
    if (this.stopped || this.state !== "offline") return;
    this.attempt = 0;
    this.open();
  }

  // The socket is known dead (browser offline, heartbeat lost): close and retry.
  drop() {
    if (this.stopped || !this.ws) return;
    this.closed(1006);
  }

  startHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastFrameAt > DEAD_AFTER_MS) {
        this.drop();
        return;
      }
      this.send({ type: "ping" });
    }, PING_EVERY_MS);
  }

  // Send a frame if the socket is open; false otherwise (the caller keeps it for later).
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
