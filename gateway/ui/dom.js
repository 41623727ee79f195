// Building the page from data, safely: every string becomes a text node or an attribute
// value, never markup, so a tenant, agent or tool argument can never inject HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("td", {class: "num"}, "42"). Attributes named on* are listeners. */
export function h(tag, attributes, ...children) {
  return build(document.createElement(tag), attributes, children);
}

/** An SVG element, the same way. */
export function svg(tag, attributes, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

export function byId(id) {
  return document.getElementById(id);
}

/** Put `nodes` in place of whatever `parent` held. */
export function fill(parent, ...nodes) {
  parent.replaceChildren(...nodes.flat().filter((node) => node));
}

/** A pill naming a state; `tone` picks its colour (good, warn, bad, neutral). */
export function chip(text, tone = "neutral") {
  return h("span", {class: `chip ${tone}`}, text);
}

function cellClass(column) {
  return [column.numeric ? "num" : null, column.nowrap ? "nowrap" : null].filter(Boolean).join(" ") || null;
}

/**
 * A table of `rows`. Each column is {label, cell: row => text or Node, numeric?, nowrap?, key?};
 * a column with `key` sets data-col=<key> on each of its cells, so tests and styles find them.
 * `rowKey(row)` becomes the row's data-key; `footer` is an optional last row (same columns).
 */
export function table(columns, rows, {rowKey, footer, empty = "Nothing to show yet.", rowClass} = {}) {
  const head = h("tr", {}, columns.map((column) => h("th", {class: cellClass(column), scope: "col"}, column.label)));
  const line = (row, extra) => {
    const classes = [extra, rowClass ? rowClass(row) : null].filter(Boolean).join(" ") || null;
    return h("tr", {"data-key": rowKey ? rowKey(row) : null, class: classes},
      columns.map((column) => h("td", {class: cellClass(column), "data-col": column.key || null}, column.cell(row))));
  };
  const body = rows.length ? rows.map((row) => line(row))
    : [h("tr", {class: "empty"}, h("td", {colspan: columns.length}, empty))];
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body),
           footer ? h("tfoot", {}, line(footer, "total")) : null);
}
