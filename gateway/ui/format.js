// How figures read on the page. The rules match `lockgate usage` (gateway/reporting.py):
// whole tokens with separators, dollars to 4 places, "?" after a cost that misses unpriced
// requests, error rate as a percentage, latency in milliseconds. Times are UTC, like the
// usage API's buckets.

const whole = new Intl.NumberFormat("en-US", {maximumFractionDigits: 0});
const tenth = new Intl.NumberFormat("en-US", {minimumFractionDigits: 1, maximumFractionDigits: 1});
const fourPlaces = new Intl.NumberFormat("en-US", {minimumFractionDigits: 4, maximumFractionDigits: 4});
const compact = new Intl.NumberFormat("en-US", {notation: "compact", maximumFractionDigits: 1});
export const NONE = "–";

export function count(value) {
  return value === null || value === undefined ? NONE : whole.format(value);
}

/** "$1,234.5678"; a cost below the last digit shows as "<$0.0001", never as zero. */
export function usd(value, unpricedRequests = 0) {
  if (value === null || value === undefined) return NONE;
  const text = value > 0 && value < 0.0001 ? "<$0.0001" : `$${fourPlaces.format(value)}`;
  return unpricedRequests ? `${text}?` : text;
}

const upToCents = new Intl.NumberFormat("en-US", {maximumFractionDigits: 2});

/** A round sum, like a budget: "$500", "$12.50". */
export function dollars(value) {
  return `$${upToCents.format(value)}`;
}

export function percent(ratio) {
  return `${tenth.format(ratio * 100)}%`;
}

export function milliseconds(value) {
  return value === null || value === undefined ? NONE : `${tenth.format(value)} ms`;
}

/** Axis labels: 1.2K, 3.4M, $0.25. */
export function short(value, metric) {
  if (metric === "cost") return value >= 1 || value === 0 ? `$${compact.format(value)}` : `$${value.toPrecision(2)}`;
  return compact.format(value);
}

const pad = (number) => String(number).padStart(2, "0");

/** "2026-11-26 05:03:09" in UTC, from unix seconds; without the year when `short`. */
export function utc(seconds, {short = false} = {}) {
  if (seconds === null || seconds === undefined) return NONE;
  const d = new Date(seconds * 1000);
  const date = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  return `${short ? "" : `${d.getUTCFullYear()}-`}${date} `
    + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** "2m 05s", "42s": how long until (or since) a moment. */
export function span(seconds) {
  const total = Math.max(0, Math.round(seconds));
  if (total < 60) return `${total}s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes}m ${pad(total % 60)}s`;
  return `${Math.floor(minutes / 60)}h ${pad(minutes % 60)}m`;
}

/** The text shown for a tool call's arguments: pretty JSON when they parse, else as sent. */
export function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}
