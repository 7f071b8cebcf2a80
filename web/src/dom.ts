// A small element builder: text is always set as text (never parsed as HTML).

type Child = Node | string | number | null | undefined | false | Child[];
type Handler = (event: Event) => void;
export interface Attrs {
  [name: string]: string | number | boolean | Handler | null | undefined;
}

export function h(tag: string, attrs: Attrs | null = null, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        element.addEventListener(name.slice(2).toLowerCase(), value);
      } else if (name === "class") {
        element.className = String(value);
      } else if (value === true) {
        element.setAttribute(name, "");
      } else {
        element.setAttribute(name, String(value));
      }
    }
  }
  append(element, children);
  return element;
}

function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(element: Element, ...children: Child[]): void {
  element.replaceChildren();
  append(element, children);
}

/** An in-app link: navigates with history.pushState (see router.ts). */
export function link(href: string, ...children: Child[]): HTMLElement {
  return h("a", { href, "data-link": true }, ...children);
}

export function badge(status: string): HTMLElement {
  return h("span", { class: `badge badge-${status}`, "data-status": status }, status);
}

/** An empty state: what is missing and what to do next. */
export function empty(title: string, ...next: Child[]): HTMLElement {
  return h("div", { class: "empty", role: "status" }, h("h3", null, title), h("p", null, ...next));
}

/** An error message from a problem (never a blank screen). */
export function errorBox(error: unknown): HTMLElement {
  const message = error instanceof Error ? error.message : String(error);
  const status = (error as { status?: number }).status;
  const id = (error as { problem?: { request_id?: string } }).problem?.request_id;
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", null, status ? `Error ${status}: ` : "Error: "),
    message,
    id ? h("span", { class: "muted" }, ` (request ${id})`) : null,
  );
}

export function keyValues(rows: [string, Child][]): HTMLElement {
  return h(
    "dl",
    { class: "kv" },
    rows.map(([key, value]) => [h("dt", null, key), h("dd", null, value)]),
  );
}

export function code(text: string): HTMLElement {
  return h("code", null, text);
}
