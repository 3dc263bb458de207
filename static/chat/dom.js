// Small DOM and formatting helpers. Text goes in through textContent only:
// nothing here ever parses a string as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);

// h("li", {className: "x", dataset: {seq: 3}, attrs: {title: "t"}}, child, "text", …)
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "attrs") for (const [name, v] of Object.entries(value)) el.setAttribute(name, v);
    else if (key === "text") el.textContent = value;
    else if (key === "on") for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    else el[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

// A stable colour per name for avatars.
export function hue(name) {
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function paintAvatar(el, name, kind) {
  const label = String(name || "?");
  el.textContent = kind === "group" ? "#" : [...label][0].toUpperCase();
  el.style.setProperty("--hue", hue(label));
  el.classList.toggle("avatar-group", kind === "group");
}

export function avatar(name, kind) {
  const el = h("span", { className: "avatar", attrs: { "aria-hidden": "true" } });
  paintAvatar(el, name, kind);
  return el;
}

// Times in the viewer's own time zone and locale.
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const dayYearFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "long", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

export const formatTime = (date) => timeFormat.format(date);
export const formatFull = (date) => fullFormat.format(date);

export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

export function formatDay(date, now = new Date()) {
  if (dayKey(date) === dayKey(now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  return date.getFullYear() === now.getFullYear() ? dayFormat.format(date) : dayYearFormat.format(date);
}

export function newClientId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
