// The HTTP API, with the browser's session cookie and Django's CSRF token.

export class ApiError extends Error {
  constructor(status, data) {
    super(ApiError.describe(status, data));
    this.status = status;
    this.data = data;
  }

  // A short human sentence from DRF's error shapes: {"detail"} or {"field": ["message"]}.
  static describe(status, data) {
    if (status === 0) return "The server cannot be reached.";
    if (data && typeof data === "object") {
      if (typeof data.detail === "string") return data.detail;
      for (const [field, value] of Object.entries(data)) {
        const text = Array.isArray(value) ? value.join(" ") : String(value);
        return field === "non_field_errors" ? text : `${field}: ${text}`;
      }
    }
    if (status === 429) return "Too many requests; try again in a moment.";
    return `The server answered ${status}.`;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function csrfToken() {
  return cookie("csrftoken") || document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
}

let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, null);
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
  }
  if (response.status === 401) onUnauthenticated();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const del = (path) => api("DELETE", path);
