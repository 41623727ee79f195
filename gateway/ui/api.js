// The admin key and every call to the admin API.
//
// The key lives in sessionStorage (this tab only, gone when it closes) and goes out as
// `Authorization: Bearer` on each fetch; no cookie is ever set or sent. A 401 or 403 means
// the key is wrong or no longer an admin key: the key is dropped and `onSignedOut` is told
// the gateway's own message, so the page can go back to the login form and show it.

const STORAGE_KEY = "lockgate.adminKey";
let signedOut = () => {};

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function onSignedOut(listener) {
  signedOut = listener;
}

export function savedKey() {
  return sessionStorage.getItem(STORAGE_KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const pairs = Object.entries(params).filter(([, value]) => value !== undefined && value !== null && value !== "");
  return pairs.length ? `?${new URLSearchParams(pairs)}` : "";
}

/** GET (or POST with a JSON `body`) an admin path; resolves to the parsed JSON answer. */
export async function api(path, {method = "GET", body} = {}) {
  const headers = {Authorization: `Bearer ${savedKey() || ""}`, Accept: "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {method, headers, cache: "no-store", credentials: "omit",
                                  body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (error) {
    throw new ApiError(`Could not reach the gateway (${error.message}).`, 0);
  }
  const payload = await response.json().catch(() => null);
  if (response.ok) return payload;
  const message = payload?.error?.message || `The gateway answered ${response.status} ${response.statusText}.`;
  if (response.status === 401 || response.status === 403) {
    forgetKey();
    signedOut(message);
  }
  throw new ApiError(message, response.status);
}
