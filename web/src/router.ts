// History-API routing under /ui (the server answers index.html for every client route).

export const BASE = "/ui";

export type Cleanup = () => void;
export type View = (root: HTMLElement, params: Record<string, string>, search: URLSearchParams) =>
  | Cleanup
  | void;

interface Route {
  pattern: RegExp;
  keys: string[];
  view: View;
  section: string;
}

const routes: Route[] = [];
let current: Cleanup | null = null;
let renderRoot: HTMLElement | null = null;
let onChange: (section: string) => void = () => undefined;

export function route(path: string, section: string, view: View): void {
  const keys: string[] = [];
  const source = path.replace(/:([a-z_]+)/g, (_, key: string) => {
    keys.push(key);
    return "([^/]+)";
  });
  routes.push({ pattern: new RegExp(`^${source}/?$`), keys, view, section });
}

export function navigate(path: string, replace = false): void {
  const url = path.startsWith(BASE) ? path : `${BASE}${path}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

export function start(root: HTMLElement, changed: (section: string) => void): void {
  renderRoot = root;
  onChange = changed;
  window.addEventListener("popstate", () => render());
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = (event.target as Element | null)?.closest?.("a[data-link]");
    if (!(anchor instanceof HTMLAnchorElement)) return;
    event.preventDefault();
    navigate(anchor.getAttribute("href") ?? BASE);
  });
  render();
}

export function render(): void {
  if (!renderRoot) return;
  current?.();
  current = null;
  const path = location.pathname.startsWith(BASE)
    ? location.pathname.slice(BASE.length) || "/"
    : "/";
  for (const candidate of routes) {
    const match = candidate.pattern.exec(path);
    if (!match) continue;
    const params: Record<string, string> = {};
    candidate.keys.forEach((key, index) => {
      params[key] = decodeURIComponent(match[index + 1] ?? "");
    });
    renderRoot.replaceChildren();
    onChange(candidate.section);
    current = candidate.view(renderRoot, params, new URLSearchParams(location.search)) ?? null;
    renderRoot.focus({ preventScroll: true });
    return;
  }
  navigate("/jobs", true);
}
