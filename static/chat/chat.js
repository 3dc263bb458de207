// The chat page: room list, history, live messages, composer, typing, read markers.
//
// Sources of truth:
// - the WebSocket (connection.js) for everything live: hello (rooms with
//   unread counts), message.new / message.ack, typing, read, room.joined/left;
// - the HTTP API for history (GET /api/rooms/{id}/messages/) and management
//   (rooms, members, user search).
// Every message is keyed by (room, seq): whatever path it arrives by (history,
// live, replay after a reconnect, ack), it is stored once and shown in seq order.
// Message text is only ever set with textContent.

import { ApiError, del, get, post, setUnauthenticatedHandler } from "./api.js";
import { Connection } from "./connection.js";
import { $, avatar, debounce, dayKey, formatDay, formatFull, formatTime, h, newClientId, paintAvatar } from "./dom.js";

const PAGE_SIZE = 50;
const GAP_PAGE_SIZE = 200;
const GAP_RESET = 400; // more missing than this: reload the latest page instead of filling in
const MAX_BODY = 4000;
const ACK_TIMEOUT_MS = 10000;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_SHOW_MS = 5000;
const GROUP_WITHIN_MS = 5 * 60 * 1000;
const NEAR_BOTTOM_PX = 80;
const NEAR_TOP_PX = 200;
const PREVIEW_ROOMS = 30;

const app = $("#app");
const me = { id: Number(app.dataset.userId), username: app.dataset.username };
const loginUrl = app.dataset.loginUrl;
const narrow = window.matchMedia("(max-width: 760px)");

const ui = {
  conn: $("#conn"),
  connText: $("#conn .conn-text"),
  banner: $("#conn-banner"),
  bannerText: $("#conn-banner .conn-banner-text"),
  roomList: $("#room-list"),
  roomsEmpty: $("#rooms-empty"),
  placeholder: $("#placeholder"),
  roomView: $("#room-view"),
  roomTitle: $("#room-title"),
  roomSub: $("#room-sub"),
  roomAvatar: $("#room-avatar"),
  scroller: $("#scroller"),
  historyStatus: $("#history-status"),
  messages: $("#messages"),
  pending: $("#pending"),
  jump: $("#jump"),
  typing: $("#typing"),
  composer: $("#composer"),
  input: $("#input"),
  send: $("#send"),
  counter: $("#counter"),
  toasts: $("#toasts"),
};

// ---------------------------------------------------------------- state

/** id -> room: the server's fields plus what this page tracks about it. */
const rooms = new Map();
/** client_id -> pending outgoing message. */
const pendingById = new Map();
let openId = null;
let hellos = 0;
let activityClock = 1e9; // room order: hello order first, then most recent activity on top
let resumeAsked = new Set();

function makeRoom(data) {
  return {
    id: data.id,
    name: data.name || "",
    kind: data.kind,
    role: data.role,
    last_seq: data.last_seq || 0, // the highest seq known to exist
    unread: data.unread || 0,
    seen: data.last_seq || 0, // the resume cursor: every message up to here reached this page (or is history)
    readSent: (data.last_seq || 0) - (data.unread || 0),
    activity: 0,
    label: "", // a direct room's name: the other person's username
    preview: null, // {seq, author, body}
    typing: new Map(), // user id -> {username, until}
    store: null, // the loaded history, once the room was opened
    draft: "",
    lastTypingSent: 0,
    el: null,
  };
}

function updateRoomFields(room, data) {
  room.name = data.name || "";
  room.kind = data.kind;
  room.role = data.role;
}

function roomName(room) {
  if (room.name) return room.name;
  if (room.label) return room.label;
  return room.kind === "direct" ? "Direct message" : "Untitled group";
}

/** A room's loaded messages, in seq order, and its outgoing ones. */
class Store {
  constructor(room) {
    this.room = room;
    this.seqs = [];
    this.items = new Map(); // seq -> {msg, el}
    this.pending = new Map(); // client_id -> pending
    this.loaded = false;
    this.loading = false;
    this.loadFailed = false;
    this.hasOlder = true;
    this.loadingOlder = false;
    this.filling = false;
  }

  get maxSeq() {
    return this.seqs.length ? this.seqs[this.seqs.length - 1] : 0;
  }

  get minSeq() {
    return this.seqs.length ? this.seqs[0] : 0;
  }

  /** Store a message once; returns its element if it was new. */
  insert(msg) {
    if (this.items.has(msg.seq)) return null;
    let lo = 0;
    let hi = this.seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[mid] < msg.seq) lo = mid + 1;
      else hi = mid;
    }
    this.seqs.splice(lo, 0, msg.seq);
    const el = messageElement(msg);
    this.items.set(msg.seq, { msg, el });
    this.decorate(lo);
    if (lo + 1 < this.seqs.length) this.decorate(lo + 1);
    if (this.room.id === openId) {
      const next = lo + 1 < this.seqs.length ? this.items.get(this.seqs[lo + 1]).el : null;
      ui.messages.insertBefore(el, next);
    }
    return el;
  }

  /** Day separators and runs of messages by one sender. */
  decorate(index) {
    const item = this.items.get(this.seqs[index]);
    const prev = index > 0 ? this.items.get(this.seqs[index - 1]).msg : null;
    const date = new Date(item.msg.created_at);
    const newDay = !prev || dayKey(new Date(prev.created_at)) !== dayKey(date);
    const sameRun =
      prev &&
      !newDay &&
      prev.sender?.id === item.msg.sender?.id &&
      date - new Date(prev.created_at) < GROUP_WITHIN_MS &&
      prev.seq === item.msg.seq - 1;
    item.el.classList.toggle("new-day", newDay);
    if (newDay) item.el.dataset.day = formatDay(date);
    else delete item.el.dataset.day;
    item.el.classList.toggle("cont", Boolean(sameRun));
  }
}

// ---------------------------------------------------------------- messages

function messageElement(msg) {
  const mine = msg.sender?.id === me.id;
  const author = msg.sender ? msg.sender.username : "Deleted user";
  const date = new Date(msg.created_at);
  return h(
    "li",
    { className: mine ? "msg mine" : "msg", dataset: { seq: msg.seq, sender: msg.sender?.id ?? "" } },
    mine ? null : avatar(author),
    h(
      "div",
      { className: "msg-main" },
      h(
        "div",
        { className: "msg-meta" },
        h("span", { className: "msg-author", text: mine ? "You" : author }),
        h("time", { className: "msg-time", text: formatTime(date), attrs: { datetime: msg.created_at, title: formatFull(date) } }),
      ),
      h("div", { className: "msg-body", text: msg.body }),
    ),
  );
}

/**
 * Take a message from any path. `how`: "live" (message.new, including a
 * resume replay), "ack" (our own send, stored), "history" (HTTP).
 */
function acceptMessage(msg, how) {
  const room = rooms.get(msg.room);
  if (!room) {
    if (how !== "history") discoverRoom(msg.room);
    return;
  }
  const mine = msg.sender?.id === me.id;
  // The resume cursor follows the socket's message.new stream only: an ack can
  // overtake another sender's earlier message that is still on its way.
  if (how === "live") room.seen = Math.max(room.seen, msg.seq);
  if (how !== "history" && msg.sender) clearTyping(room, msg.sender.id);
  if (msg.seq > room.last_seq) {
    room.last_seq = msg.seq;
    if (how !== "history") {
      // One's own message marks the room read (the server does the same).
      room.unread = mine ? 0 : room.unread + 1;
      if (mine) room.readSent = Math.max(room.readSent, msg.seq);
      room.activity = ++activityClock;
    }
  }
  if (!room.preview || msg.seq >= room.preview.seq) {
    room.preview = { seq: msg.seq, author: mine ? "You" : msg.sender?.username || "", body: msg.body };
  }
  const store = room.store;
  if (store) {
    if (mine && msg.client_id) resolvePending(msg.client_id);
    const gap = how === "live" && store.loaded && store.seqs.length && msg.seq > store.maxSeq + 1;
    const atBottom = room.id === openId && nearBottom();
    if (store.insert(msg) && room.id === openId && how !== "history") {
      if (atBottom || mine) scrollToBottom();
      else ui.jump.hidden = false;
    }
    if (gap) fillGap(room);
  }
  if (how !== "history") {
    scheduleRoomsRender();
    if (room.id === openId) maybeMarkRead();
  }
}

// ---------------------------------------------------------------- outgoing messages

function pendingElement(p) {
  const retry = h("button", { type: "button", className: "link-btn", text: "Retry", on: { click: () => transmit(p) } });
  const discard = h("button", { type: "button", className: "link-btn", text: "Discard", on: { click: () => discardPending(p) } });
  return h(
    "li",
    { className: "msg mine pending", dataset: { clientId: p.client_id } },
    h(
      "div",
      { className: "msg-main" },
      h("div", { className: "msg-body", text: p.body }),
      h("div", { className: "msg-status" }, h("span", { className: "msg-status-text" }), retry, discard),
    ),
  );
}

function renderPending(p) {
  const text = {
    sending: "Sending…",
    waiting: "Waiting for connection…",
    failed: `Not sent${p.detail ? `: ${p.detail}` : ""}`,
  }[p.state];
  p.el.classList.toggle("failed", p.state === "failed");
  p.el.querySelector(".msg-status-text").textContent = text;
}

function sendMessage(room, body) {
  const p = { client_id: newClientId(), room: room.id, body, state: "waiting", detail: "", timer: null, el: null };
  p.el = pendingElement(p);
  room.store.pending.set(p.client_id, p);
  pendingById.set(p.client_id, p);
  if (room.id === openId) ui.pending.append(p.el);
  transmit(p);
  scrollToBottom();
}

/** Send (or send again, with the same client_id: the server stores it at most once). */
function transmit(p) {
  clearTimeout(p.timer);
  p.detail = "";
  const sent =
    conn.isOpen && conn.send({ type: "message.send", room: p.room, body: p.body, client_id: p.client_id });
  if (sent) {
    p.state = "sending";
    p.timer = setTimeout(() => failPending(p, "no answer from the server"), ACK_TIMEOUT_MS);
  } else {
    p.state = "waiting"; // sent once the connection is back (after its resume)
  }
  renderPending(p);
}

function failPending(p, detail) {
  if (!pendingById.has(p.client_id)) return;
  clearTimeout(p.timer);
  p.state = "failed";
  p.detail = detail;
  renderPending(p);
}

function resolvePending(clientId) {
  const p = pendingById.get(clientId);
  if (!p) return;
  clearTimeout(p.timer);
  pendingById.delete(clientId);
  rooms.get(p.room)?.store?.pending.delete(clientId);
  p.el.remove();
}

function discardPending(p) {
  resolvePending(p.client_id);
}

function flushPending() {
  for (const p of pendingById.values()) if (p.state === "waiting") transmit(p);
}

function onDisconnected() {
  // Whatever was in flight is sent again after the resume (same client_id).
  for (const p of pendingById.values()) {
    if (p.state === "sending") {
      clearTimeout(p.timer);
      p.state = "waiting";
      renderPending(p);
    }
  }
}

// ---------------------------------------------------------------- history

function setHistoryStatus(store, text, retry) {
  if (store.room.id !== openId) return;
  ui.historyStatus.replaceChildren(text);
  if (retry) {
    ui.historyStatus.append(" ", h("button", { type: "button", className: "link-btn", text: "Retry", on: { click: retry } }));
  }
}

function historyStatusFor(store) {
  if (store.loadFailed) return;
  if (store.loadingOlder || (store.loading && !store.seqs.length)) setHistoryStatus(store, "Loading messages…");
  else if (store.loaded && !store.hasOlder) {
    setHistoryStatus(store, store.seqs.length ? "This is the beginning of the conversation." : "No messages yet. Say hello!");
  } else setHistoryStatus(store, "");
}

function messagesUrl(room, params) {
  return `/api/rooms/${room.id}/messages/?${new URLSearchParams(params)}`;
}

async function loadLatest(room) {
  const store = room.store;
  if (store.loading) return;
  store.loading = true;
  store.loadFailed = false;
  historyStatusFor(store);
  try {
    const data = await get(messagesUrl(room, { limit: PAGE_SIZE }));
    for (const msg of data.results) acceptMessage(msg, "history");
    store.hasOlder = Boolean(data.has_more) && data.results.length > 0;
    store.loaded = true;
    room.seen = Math.max(room.seen, store.maxSeq);
    if (room.id === openId) {
      scrollToBottom();
      fillViewport(room);
      maybeMarkRead();
    }
    scheduleRoomsRender();
    if (room.last_seq > store.maxSeq) fillGap(room);
  } catch (error) {
    store.loadFailed = true;
    setHistoryStatus(store, `Couldn't load messages (${error.message})`, () => loadLatest(room));
  } finally {
    store.loading = false;
    historyStatusFor(store);
  }
}

async function loadOlder(room) {
  const store = room.store;
  if (!store || !store.loaded || !store.hasOlder || store.loadingOlder || !store.seqs.length) return;
  store.loadingOlder = true;
  historyStatusFor(store);
  try {
    const data = await get(messagesUrl(room, { before: store.minSeq, limit: PAGE_SIZE }));
    const open = room.id === openId;
    const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
    for (const msg of data.results) acceptMessage(msg, "history");
    store.hasOlder = Boolean(data.has_more) && data.results.length > 0;
    // Keep what the reader is looking at where it was.
    if (open) ui.scroller.scrollTop = ui.scroller.scrollHeight - fromBottom;
  } catch (error) {
    toast(`Couldn't load earlier messages: ${error.message}`);
  } finally {
    store.loadingOlder = false;
    historyStatusFor(store);
  }
  if (room.id === openId) fillViewport(room);
}

/** Load older pages until the list is scrollable (or the beginning is shown). */
function fillViewport(room) {
  const store = room.store;
  if (room.id !== openId || !store.hasOlder || store.loadingOlder) return;
  if (ui.scroller.scrollHeight <= ui.scroller.clientHeight + NEAR_TOP_PX) loadOlder(room);
}

/** Fetch what is missing between the newest loaded message and the room's last seq. */
async function fillGap(room) {
  const store = room.store;
  if (!store || !store.loaded || store.filling) return;
  if (room.last_seq - store.maxSeq > GAP_RESET) {
    // Far behind: start again from the latest page; older ones load on scroll.
    resetStore(room);
    loadLatest(room);
    return;
  }
  store.filling = true;
  const atBottom = room.id === openId && nearBottom();
  try {
    while (room.last_seq > store.maxSeq) {
      const data = await get(messagesUrl(room, { after: store.maxSeq, limit: GAP_PAGE_SIZE }));
      for (const msg of data.results) acceptMessage(msg, "history");
      if (!data.has_more || !data.results.length) break;
    }
    room.seen = Math.max(room.seen, store.maxSeq);
    if (room.id === openId) {
      if (atBottom) scrollToBottom();
      maybeMarkRead();
    }
  } catch (error) {
    // The next reconnect's resume or the next message retries.
  } finally {
    store.filling = false;
  }
}

function resetStore(room) {
  const store = room.store;
  store.seqs = [];
  store.items.clear();
  store.loaded = false;
  store.hasOlder = true;
  if (room.id === openId) ui.messages.replaceChildren();
}

// ---------------------------------------------------------------- read markers

function roomVisible() {
  return openId !== null && document.visibilityState === "visible" && (!narrow.matches || app.classList.contains("room-open"));
}

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
}

/** The open room is on screen and has unread messages: tell the server (and so the user's other tabs). */
function maybeMarkRead() {
  const room = rooms.get(openId);
  if (!room || !room.store?.loaded || !roomVisible() || !nearBottom()) return;
  const seq = room.store.maxSeq;
  if (room.unread <= 0 || seq <= room.readSent) return;
  if (conn.send({ type: "read", room: room.id, seq })) {
    room.readSent = seq;
    room.unread = Math.max(0, room.last_seq - seq);
    scheduleRoomsRender();
  }
}

// ---------------------------------------------------------------- typing

function clearTyping(room, userId) {
  if (room.typing.delete(userId)) renderTyping(room);
}

let typingSweep = null;
function sweepTyping() {
  clearTimeout(typingSweep);
  typingSweep = null;
  const now = Date.now();
  let next = Infinity;
  for (const room of rooms.values()) {
    let changed = false;
    for (const [id, t] of room.typing) {
      if (t.until <= now) {
        room.typing.delete(id);
        changed = true;
      } else next = Math.min(next, t.until);
    }
    if (changed) renderTyping(room);
  }
  if (next !== Infinity) typingSweep = setTimeout(sweepTyping, next - now + 20);
}

function typingText(room) {
  const names = [...room.typing.values()].map((t) => t.username);
  if (!names.length) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

function renderTyping(room) {
  updateRoomItem(room);
  if (room.id !== openId) return;
  const text = typingText(room);
  if (text) ui.typing.textContent = text; // the old text stays while it fades out
  ui.typing.classList.toggle("visible", Boolean(text));
}

function onTypingFrame(frame) {
  const room = rooms.get(frame.room);
  if (!room || !frame.user || frame.user.id === me.id) return;
  room.typing.set(frame.user.id, { username: frame.user.username, until: Date.now() + TYPING_SHOW_MS });
  renderTyping(room);
  if (!typingSweep) typingSweep = setTimeout(sweepTyping, TYPING_SHOW_MS + 20);
}

// ---------------------------------------------------------------- room list

let roomsRenderQueued = false;
function scheduleRoomsRender() {
  if (roomsRenderQueued) return;
  roomsRenderQueued = true;
  queueMicrotask(() => {
    roomsRenderQueued = false;
    renderRooms();
  });
}

function roomElement(room) {
  const button = h(
    "button",
    { type: "button", className: "room", on: { click: () => navigate(room.id) } },
    h("span", { className: "avatar", attrs: { "aria-hidden": "true" } }),
    h("span", { className: "room-main" }, h("span", { className: "room-name" }), h("span", { className: "room-sub" })),
    h("span", { className: "badge", hidden: true }),
  );
  return h("li", { dataset: { roomId: room.id } }, button);
}

function updateRoomItem(room) {
  if (!room.el) return;
  const button = room.el.firstChild;
  const name = roomName(room);
  paintAvatar(button.querySelector(".avatar"), name, room.kind);
  button.querySelector(".room-name").textContent = name;
  const typing = typingText(room);
  const sub = button.querySelector(".room-sub");
  sub.classList.toggle("is-typing", Boolean(typing));
  if (typing) sub.textContent = typing;
  else if (room.preview) {
    const byThem = room.kind === "direct" && room.preview.author !== "You";
    sub.textContent = byThem ? room.preview.body : `${room.preview.author}: ${room.preview.body}`;
  }
  else sub.textContent = room.kind === "direct" ? "Direct message" : "Group";
  const badge = button.querySelector(".badge");
  badge.hidden = room.unread <= 0;
  badge.textContent = room.unread > 99 ? "99+" : String(room.unread);
  badge.setAttribute("aria-label", `${room.unread} unread`);
  button.classList.toggle("has-unread", room.unread > 0);
  if (room.id === openId) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
}

function renderRooms() {
  const sorted = [...rooms.values()].sort((a, b) => b.activity - a.activity || b.id - a.id);
  const list = ui.roomList;
  sorted.forEach((room, index) => {
    if (!room.el) room.el = roomElement(room);
    updateRoomItem(room);
    if (list.children[index] !== room.el) list.insertBefore(room.el, list.children[index] || null);
  });
  while (list.children.length > sorted.length) list.lastChild.remove();
  ui.roomsEmpty.hidden = hellos === 0 || sorted.length > 0;
  const total = sorted.reduce((sum, room) => sum + Math.max(0, room.unread), 0);
  document.title = total ? `(${total}) Chat` : "Chat";
  if (openId !== null) renderHeader(rooms.get(openId));
}

function addRoom(data, { bump = false } = {}) {
  let room = rooms.get(data.id);
  if (room) {
    updateRoomFields(room, data);
  } else {
    room = makeRoom(data);
    rooms.set(room.id, room);
    if (room.kind === "direct" && !room.name) resolveDirectLabel(room);
  }
  if (bump) room.activity = ++activityClock;
  scheduleRoomsRender();
  return room;
}

function removeRoom(id, why) {
  const room = rooms.get(id);
  if (!room) return;
  rooms.delete(id);
  for (const clientId of room.store?.pending.keys() || []) pendingById.delete(clientId);
  room.el?.remove();
  if (openId === id) {
    closeRoom();
    history.replaceState(null, "", location.pathname + location.search);
    if (why) toast(why.replace("{name}", roomName(room)));
  }
  scheduleRoomsRender();
}

const discovering = new Set();
async function discoverRoom(id) {
  if (discovering.has(id)) return;
  discovering.add(id);
  try {
    addRoom(await get(`/api/rooms/${id}/`), { bump: true });
  } catch {
    /* not ours after all */
  } finally {
    discovering.delete(id);
  }
}

async function resolveDirectLabel(room) {
  try {
    const data = await get(`/api/rooms/${room.id}/members/`);
    const other = data.results.find((m) => m.id !== me.id);
    if (other) {
      room.label = other.username;
      scheduleRoomsRender();
    }
  } catch {
    /* keep the generic label */
  }
}

// ---------------------------------------------------------------- opening rooms

function navigate(id) {
  const hash = id === null ? "" : `#room/${id}`;
  if (location.hash === hash || (!hash && !location.hash)) route();
  else if (hash) location.hash = hash;
  else {
    history.pushState(null, "", location.pathname + location.search);
    route();
  }
}

function route() {
  const match = /^#room\/(\d+)$/.exec(location.hash);
  const id = match ? Number(match[1]) : null;
  if (id !== null && rooms.has(id)) openRoom(id);
  else if (hellos > 0 || id === null) closeRoom();
}

function renderHeader(room) {
  if (!room) return;
  const name = roomName(room);
  ui.roomTitle.textContent = name;
  paintAvatar(ui.roomAvatar, name, room.kind);
  ui.roomSub.textContent = room.kind === "direct" ? "Direct message" : `Group${room.role !== "member" ? ` · you are ${room.role}` : ""}`;
  ui.input.placeholder = room.kind === "direct" ? `Message ${name}` : `Message #${name}`;
}

function openRoom(id) {
  const room = rooms.get(id);
  if (!room) return;
  const previous = rooms.get(openId);
  if (previous && previous !== room) previous.draft = ui.input.value;
  const switching = openId !== id;
  openId = id;
  app.classList.add("room-open");
  ui.placeholder.hidden = true;
  ui.roomView.hidden = false;
  renderHeader(room);
  if (!room.store) room.store = new Store(room);
  const store = room.store;
  if (switching) {
    ui.messages.replaceChildren(...store.seqs.map((seq) => store.items.get(seq).el));
    ui.pending.replaceChildren(...[...store.pending.values()].map((p) => p.el));
    ui.input.value = room.draft;
    autoGrow();
    updateCounter();
    ui.jump.hidden = true;
    ui.typing.textContent = "";
    ui.typing.classList.remove("visible");
  }
  renderTyping(room);
  historyStatusFor(store);
  renderRooms();
  if (!store.loaded) loadLatest(room);
  else {
    scrollToBottom();
    if (room.last_seq > store.maxSeq) fillGap(room);
    maybeMarkRead();
  }
  if (!narrow.matches) ui.input.focus({ preventScroll: true });
}

function closeRoom() {
  const previous = rooms.get(openId);
  if (previous) previous.draft = ui.input.value;
  openId = null;
  app.classList.remove("room-open");
  ui.roomView.hidden = true;
  ui.placeholder.hidden = false;
  ui.messages.replaceChildren();
  ui.pending.replaceChildren();
  renderRooms();
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
  ui.jump.hidden = true;
}

// ---------------------------------------------------------------- the connection

// A resume the connection did not survive (closed before resume.done) is not
// asked again: a replay too large for the server's per-device outbox gets the
// socket closed (4008) every time. The next one starts from the rooms' last seq
// instead, and the HTTP API fills in what the open rooms lack (fillGap).
let resumeInFlight = false;
let failedResumes = 0;

function resumeCursor() {
  // Every room we know, with the last seq that reached us; the server replays the rest.
  const cursor = {};
  for (const room of rooms.values()) {
    if (failedResumes > 0) room.seen = Math.max(room.seen, room.last_seq);
    cursor[String(room.id)] = room.seen;
  }
  resumeAsked = new Set(rooms.keys());
  resumeInFlight = true;
  return cursor;
}

function onHello(frame) {
  hellos += 1;
  if (frame.user) {
    me.id = frame.user.id;
    me.username = frame.user.username;
  }
  const present = new Set();
  const count = frame.rooms.length;
  frame.rooms.forEach((data, index) => {
    present.add(data.id);
    const known = rooms.get(data.id);
    const room = addRoom(data);
    // Rooms not in the resume we sent: their stream starts now; older is history.
    if (!known || !resumeAsked.has(data.id)) room.seen = Math.max(room.seen, data.last_seq);
    room.last_seq = Math.max(data.last_seq, room.store?.maxSeq || 0);
    room.unread = data.unread;
    room.readSent = data.last_seq - data.unread;
    room.activity = count - index;
  });
  activityClock = Math.max(activityClock, 1e9);
  for (const id of [...rooms.keys()]) if (!present.has(id)) removeRoom(id, "You are no longer in {name}.");
  renderRooms();
  if (hellos === 1) {
    route();
    loadPreviews();
  }
}

/** The last message of the first rooms in the list, for their one-line preview. */
async function loadPreviews() {
  const wanted = [...rooms.values()]
    .filter((room) => !room.preview && room.last_seq > 0)
    .sort((a, b) => b.activity - a.activity)
    .slice(0, PREVIEW_ROOMS);
  const worker = async () => {
    for (let room = wanted.shift(); room; room = wanted.shift()) {
      if (room.preview || !rooms.has(room.id)) continue;
      try {
        const data = await get(messagesUrl(room, { limit: 1 }));
        for (const msg of data.results) acceptMessage(msg, "history");
        scheduleRoomsRender();
      } catch {
        return; // a preview is a nicety; stop on the first failure
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
}

function onResumeDone() {
  resumeInFlight = false;
  failedResumes = 0;
  for (const room of rooms.values()) {
    const store = room.store;
    if (store?.loaded && room.last_seq > store.maxSeq) fillGap(room);
  }
  const open = rooms.get(openId);
  if (open?.store && !open.store.loaded && !open.store.loading) loadLatest(open);
  flushPending();
  maybeMarkRead();
}

function onFrame(frame) {
  switch (frame.type) {
    case "hello":
      onHello(frame);
      break;
    case "message.new":
      acceptMessage(frame.message, "live");
      break;
    case "message.ack":
      acceptMessage(frame.message, "ack");
      resolvePending(frame.client_id);
      break;
    case "typing":
      onTypingFrame(frame);
      break;
    case "read": {
      const room = rooms.get(frame.room);
      if (room) {
        room.readSent = Math.max(room.readSent, frame.seq);
        room.unread = Math.max(0, room.last_seq - frame.seq);
        scheduleRoomsRender();
      }
      break;
    }
    case "room.joined": {
      const room = addRoom(frame.room, { bump: true });
      if (!resumeAsked.has(room.id)) room.seen = Math.max(room.seen, frame.room.last_seq);
      break;
    }
    case "room.left":
      removeRoom(frame.room, "You are no longer in {name}.");
      break;
    case "resume.done":
      onResumeDone();
      break;
    case "error": {
      const p = frame.ref ? pendingById.get(frame.ref) : null;
      if (p) failPending(p, frame.detail || frame.code);
      else if (frame.code !== "not_member") toast(frame.detail || `Error: ${frame.code}`);
      break;
    }
    default:
      break; // pong, and anything newer than this page
  }
}

const stateText = { connecting: "Connecting…", online: "Online", offline: "Offline" };
let countdown = null;

function renderConnection() {
  const state = conn.state;
  ui.conn.dataset.state = state;
  ui.connText.textContent = stateText[state];
  clearInterval(countdown);
  countdown = null;
  if (state === "online" || (state === "connecting" && hellos === 0)) {
    ui.banner.hidden = true;
    return;
  }
  ui.banner.hidden = false;
  ui.banner.dataset.state = state;
  const update = () => {
    if (conn.state !== "offline") {
      ui.bannerText.textContent = "Reconnecting…";
      return;
    }
    const seconds = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
    ui.bannerText.textContent = seconds > 0 ? `Offline. Reconnecting in ${seconds} s…` : "Offline. Reconnecting…";
  };
  update();
  if (state === "offline") countdown = setInterval(update, 1000);
}

function goToLogin() {
  conn?.stop();
  location.assign(`${loginUrl}?next=${encodeURIComponent(location.pathname + location.hash)}`);
}

const conn = new Connection({
  url: `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws/`,
  getResume: resumeCursor,
  onFrame,
  onState: (state) => {
    if (state !== "online") onDisconnected();
    if (state === "offline" && resumeInFlight) {
      resumeInFlight = false;
      failedResumes += 1;
    }
    renderConnection();
    if (state === "offline") checkSession();
  },
  onUnauthenticated: goToLogin,
});

// A refused handshake looks like any network failure; after a few, ask whether the session ended.
let sessionCheck = null;
function checkSession() {
  if (conn.attempt < 3 || sessionCheck) return;
  sessionCheck = get("/api/me/")
    .catch((error) => {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) goToLogin();
    })
    .finally(() => {
      sessionCheck = null;
    });
}

setUnauthenticatedHandler(goToLogin);

// Logging out ends this session's sockets too (close 4001); the form's own
// redirect to the login page must win over goToLogin's.
document.querySelector(".logout-form")?.addEventListener("submit", () => conn.stop());

// ---------------------------------------------------------------- composer

function autoGrow() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

function updateCounter() {
  const length = ui.input.value.trim().length;
  const over = length > MAX_BODY;
  ui.counter.textContent = length > MAX_BODY - 500 ? `${length} / ${MAX_BODY}` : "";
  ui.counter.classList.toggle("over", over);
  ui.send.disabled = over;
}

function submitComposer() {
  const room = rooms.get(openId);
  if (!room) return;
  const body = ui.input.value.trim();
  if (!body || body.length > MAX_BODY) return;
  ui.input.value = "";
  room.draft = "";
  autoGrow();
  updateCounter();
  sendMessage(room, body);
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submitComposer();
  ui.input.focus();
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    submitComposer();
  }
});

ui.input.addEventListener("input", () => {
  autoGrow();
  updateCounter();
  const room = rooms.get(openId);
  if (!room) return;
  room.draft = ui.input.value;
  const now = Date.now();
  if (ui.input.value.trim() && now - room.lastTypingSent > TYPING_SEND_EVERY_MS && conn.isOpen) {
    if (conn.send({ type: "typing", room: room.id })) room.lastTypingSent = now;
  }
});

// ---------------------------------------------------------------- scrolling

let scrollQueued = false;
ui.scroller.addEventListener("scroll", () => {
  if (scrollQueued) return;
  scrollQueued = true;
  requestAnimationFrame(() => {
    scrollQueued = false;
    const room = rooms.get(openId);
    if (!room) return;
    if (ui.scroller.scrollTop < NEAR_TOP_PX) loadOlder(room);
    if (nearBottom()) {
      ui.jump.hidden = true;
      maybeMarkRead();
    }
  });
});

ui.jump.addEventListener("click", () => {
  scrollToBottom();
  maybeMarkRead();
});

document.addEventListener("visibilitychange", maybeMarkRead);
window.addEventListener("focus", maybeMarkRead);
window.addEventListener("hashchange", route);
$("#back").addEventListener("click", () => navigate(null));
ui.banner.querySelector("[data-action=reconnect]").addEventListener("click", () => conn.reconnectNow());

// ---------------------------------------------------------------- toasts

function toast(text) {
  const el = h("div", { className: "toast", role: "status", text });
  ui.toasts.append(el);
  setTimeout(() => el.classList.add("leaving"), 4500);
  setTimeout(() => el.remove(), 5000);
}

// ---------------------------------------------------------------- people pickers and dialogs

class Picker {
  constructor(root, { multi, onPick, exclude = () => new Set() }) {
    this.root = root;
    this.multi = multi;
    this.onPick = onPick;
    this.exclude = exclude;
    this.input = root.querySelector(".picker-input");
    this.results = root.querySelector(".picker-results");
    this.chips = root.querySelector(".chips");
    this.selected = new Map();
    this.found = [];
    this.query = 0;
    const search = debounce(() => this.search(), 200);
    this.input.addEventListener("input", search);
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        if (this.found.length) this.pick(this.found[0]);
      } else if (event.key === "Backspace" && !this.input.value && this.selected.size) {
        this.unpick([...this.selected.keys()].pop());
      }
    });
  }

  async search() {
    const text = this.input.value.trim();
    const ticket = ++this.query;
    if (!text) {
      this.show([]);
      return;
    }
    try {
      const data = await get(`/api/users/?${new URLSearchParams({ search: text })}`);
      if (ticket !== this.query) return;
      const skip = this.exclude();
      this.show(data.results.filter((u) => u.id !== me.id && !this.selected.has(u.id) && !skip.has(u.id)), text);
    } catch (error) {
      if (ticket === this.query) this.show([], text, error.message);
    }
  }

  show(users, text = "", failure = "") {
    this.found = users;
    this.results.replaceChildren(
      ...users.map((user) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", className: "picker-option", attrs: { role: "option" }, on: { click: () => this.pick(user) } },
            avatar(user.username),
            h("span", { text: user.username }),
          ),
        ),
      ),
    );
    if (text && !users.length) this.results.append(h("li", { className: "picker-empty", text: failure || `No one named “${text}”.` }));
  }

  pick(user) {
    if (!this.multi) {
      this.onPick(user);
      return;
    }
    this.selected.set(user.id, user);
    this.chips.append(
      h(
        "li",
        { className: "chip", dataset: { userId: user.id } },
        h("span", { text: user.username }),
        h("button", { type: "button", className: "chip-x", attrs: { "aria-label": `Remove ${user.username}` }, text: "×", on: { click: () => this.unpick(user.id) } }),
      ),
    );
    this.input.value = "";
    this.show([]);
    this.input.focus();
    this.onPick?.(user);
  }

  unpick(id) {
    this.selected.delete(id);
    this.chips?.querySelector(`[data-user-id="${Number(id)}"]`)?.remove();
    this.onPick?.(null);
  }

  reset() {
    this.selected.clear();
    this.chips?.replaceChildren();
    this.input.value = "";
    this.show([]);
  }
}

function dialogError(dialog, text) {
  const el = dialog.querySelector("[data-error]");
  el.textContent = text || "";
  el.hidden = !text;
}

function setupDialog(dialog) {
  dialog.querySelectorAll("[data-close]").forEach((button) => button.addEventListener("click", () => dialog.close()));
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
}

// New group
const groupDialog = $("#dlg-group");
const groupPicker = new Picker(groupDialog.querySelector("[data-picker=group]"), { multi: true });
setupDialog(groupDialog);
$("#new-group").addEventListener("click", () => {
  groupPicker.reset();
  $("#group-name").value = "";
  dialogError(groupDialog, "");
  groupDialog.showModal();
  $("#group-name").focus();
});
$("#group-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("#group-name").value.trim();
  if (!name) {
    dialogError(groupDialog, "Give the group a name.");
    return;
  }
  const submit = event.submitter || groupDialog.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const data = await post("/api/rooms/", { name, kind: "group", members: [...groupPicker.selected.keys()] });
    addRoom(data, { bump: true });
    groupDialog.close();
    navigate(data.id);
  } catch (error) {
    dialogError(groupDialog, error.message);
  } finally {
    submit.disabled = false;
  }
});

// New direct message
const directDialog = $("#dlg-direct");
setupDialog(directDialog);
const directPicker = new Picker(directDialog.querySelector("[data-picker=direct]"), {
  multi: false,
  onPick: async (user) => {
    try {
      const data = await post("/api/rooms/", { kind: "direct", members: [user.id] });
      const room = addRoom(data, { bump: !rooms.has(data.id) });
      if (!room.name) room.label = user.username;
      directDialog.close();
      navigate(room.id);
    } catch (error) {
      dialogError(directDialog, error.message);
    }
  },
});
$("#new-direct").addEventListener("click", () => {
  directPicker.reset();
  dialogError(directDialog, "");
  directDialog.showModal();
  $("#direct-search").focus();
});

// Members of the open room
const membersDialog = $("#dlg-members");
setupDialog(membersDialog);
const memberIds = new Set();
const membersPicker = new Picker(membersDialog.querySelector("[data-picker=members]"), {
  multi: true,
  exclude: () => memberIds,
  onPick: () => {
    $("#add-members-btn").disabled = membersPicker.selected.size === 0;
  },
});

function note(dialog, text) {
  const el = dialog.querySelector("[data-note]");
  el.textContent = text || "";
  el.hidden = !text;
}

async function loadMembers(room) {
  const list = $("#member-list");
  list.replaceChildren(h("li", { className: "muted", text: "Loading…" }));
  try {
    const data = await get(`/api/rooms/${room.id}/members/`);
    memberIds.clear();
    list.replaceChildren(
      ...data.results.map((member) => {
        memberIds.add(member.id);
        return h(
          "li",
          { className: "member", dataset: { userId: member.id } },
          avatar(member.username),
          h("span", { className: "member-name", text: member.id === me.id ? `${member.username} (you)` : member.username }),
          member.role !== "member" ? h("span", { className: "role", text: member.role }) : null,
          h("span", {
            className: member.online ? "presence online" : "presence",
            attrs: { title: member.online ? "Online" : "Offline", "aria-label": member.online ? "Online" : "Offline" },
          }),
        );
      }),
    );
    if (data.next) list.append(h("li", { className: "muted", text: "…and more" }));
  } catch (error) {
    list.replaceChildren(h("li", { className: "form-error", text: `Couldn't load members: ${error.message}` }));
  }
}

$("#members-btn").addEventListener("click", () => {
  const room = rooms.get(openId);
  if (!room) return;
  membersPicker.reset();
  dialogError(membersDialog, "");
  note(membersDialog, "");
  $("#dlg-members-title").textContent = `Members of ${roomName(room)}`;
  $("#add-members").hidden = !(room.kind === "group" && (room.role === "owner" || room.role === "admin"));
  $("#add-members-btn").disabled = true;
  $("#leave-room").hidden = room.kind !== "group";
  loadMembers(room);
  membersDialog.showModal();
});

$("#add-members-btn").addEventListener("click", async () => {
  const room = rooms.get(openId);
  const ids = [...membersPicker.selected.keys()];
  if (!room || !ids.length) return;
  const button = $("#add-members-btn");
  button.disabled = true;
  dialogError(membersDialog, "");
  try {
    const data = await post(`/api/rooms/${room.id}/members/`, { users: ids });
    const names = [...membersPicker.selected.values()].map((u) => u.username).join(", ");
    note(membersDialog, data.added ? `Added ${names}.` : "They are members already.");
    membersPicker.reset();
    loadMembers(room);
  } catch (error) {
    dialogError(membersDialog, error.message);
    button.disabled = false;
  }
});

$("#leave-room").addEventListener("click", async () => {
  const room = rooms.get(openId);
  if (!room || !window.confirm(`Leave ${roomName(room)}?`)) return;
  try {
    await del(`/api/rooms/${room.id}/members/${me.id}/`);
    membersDialog.close();
    removeRoom(room.id);
    navigate(null);
  } catch (error) {
    dialogError(membersDialog, error.message);
  }
});

// ---------------------------------------------------------------- start

paintAvatar($(".sidebar-foot .avatar"), me.username);
renderConnection();
conn.start();

// For tests and debugging in the console; nothing depends on it.
window.chat = { rooms, conn, me };
