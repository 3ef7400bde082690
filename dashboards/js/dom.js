/**
 * Small DOM helpers. Every piece of data enters the page through `textContent` or an
 * attribute set here, never through `innerHTML`, so a label such as
 * `<img src=x onerror=alert(1)>` shows up as text.
 */

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Append children to an element: strings and numbers become text nodes, null/false skip.
 * @param {Element} el
 * @param {Array<Node|string|number|null|undefined|false>} children
 */
function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Apply attributes: `class`, `text` (textContent), `dataset`, `on*` handlers, booleans.
 * @param {Element} el
 * @param {Record<string, any>} attrs
 */
function applyAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
}

/**
 * Build an HTML element.
 * @example h("td", { class: "num", dataset: { value: 3 } }, "3.0")
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/**
 * Build an SVG element (for icons and the gauge).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/**
 * Replace an element's children.
 * @param {Element} el
 * @param {...any} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

/** @param {string} id @returns {HTMLElement} */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

/**
 * Set a value element's text and its raw number (`data-value`, read by tests and tooltips).
 * @param {Element} el
 * @param {string} text
 * @param {number|null|undefined} raw
 */
export function setValue(el, text, raw) {
  // Unchanged text stays untouched: assigning it would replace the text node and make the
  // browser lay the panel out again (every live update sets every value).
  if (el.textContent !== text) el.textContent = text;
  if (raw === null || raw === undefined || Number.isNaN(raw)) delete el.dataset.value;
  else if (el.dataset.value !== String(raw)) el.dataset.value = String(raw);
}

/** A placeholder shown while a panel loads. */
export function loading(label = "Loading…") {
  return h("div", { class: "state state--loading", role: "status" }, h("span", { class: "spinner" }), label);
}

/** A friendly empty state with a hint. */
export function empty(title, hint) {
  return h("div", { class: "state state--empty" }, h("strong", {}, title), hint ? h("span", {}, hint) : null);
}

/** An error state. */
export function failed(message) {
  return h("div", { class: "state state--error", role: "alert" }, message);
}
