// The ml-platform dashboard: sign in with an API key, then jobs, models and deployments.
import "./style.css";
import { call, credentials, onSignedOut } from "./api";
import { clear, h, link } from "./dom";
import { BASE, navigate, route, start } from "./router";
import type { Me } from "./types";
import { deploymentView, deploymentsView } from "./views/deployments";
import { jobView } from "./views/job";
import { jobsView } from "./views/jobs";
import { modelView, modelsView } from "./views/models";
import { signInView } from "./views/signin";

const app = document.getElementById("app") as HTMLElement;
const who = h("span", { class: "who", "data-testid": "who" });
const nav = h(
  "nav",
  { "aria-label": "Sections" },
  link(`${BASE}/jobs`, "Jobs"),
  link(`${BASE}/models`, "Models"),
  link(`${BASE}/deployments`, "Deployments"),
);
const signOut = h(
  "button",
  {
    class: "ghost",
    type: "button",
    onclick: () => {
      credentials.clear();
      navigate("/signin");
    },
  },
  "Sign out",
);
const header = h(
  "header",
  { class: "topbar" },
  h("a", { class: "brand", href: `${BASE}/jobs`, "data-link": true }, h("span", { class: "logo" }), "ml-platform"),
  nav,
  h("div", { class: "session" }, who, signOut),
);
const main = h("main", { id: "main", tabindex: "-1" });
const skip = h("a", { class: "skip", href: "#main" }, "Skip to content");
clear(app, skip, header, main);

async function refreshIdentity(): Promise<void> {
  if (!credentials.get()) {
    who.textContent = "";
    return;
  }
  try {
    const me = await call<Me>("/v1/me");
    who.textContent = `${me.tenant_name} · ${me.principal}`;
  } catch {
    who.textContent = "";
  }
}

function guarded(view: Parameters<typeof route>[2]): Parameters<typeof route>[2] {
  return (root, params, search) => {
    if (!credentials.get()) {
      navigate(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`, true);
      return;
    }
    return view(root, params, search);
  };
}

route("/signin", "signin", (root, _params, search) =>
  signInView(root, search, () => void refreshIdentity()),
);
route("/", "jobs", guarded(jobsView));
route("/jobs", "jobs", guarded(jobsView));
route("/jobs/:id", "jobs", guarded(jobView));
route("/models", "models", guarded(modelsView));
route("/models/:name", "models", guarded(modelView));
route("/deployments", "deployments", guarded(deploymentsView));
route("/deployments/:name", "deployments", guarded(deploymentView));

onSignedOut(() => {
  credentials.clear();
  navigate(`/signin?expired=1&next=${encodeURIComponent(location.pathname)}`, true);
});

start(main, (section) => {
  header.hidden = section === "signin";
  for (const anchor of nav.querySelectorAll("a")) {
    const active = anchor.getAttribute("href") === `${BASE}/${section}`;
    if (active) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
  if (section !== "signin" && !who.textContent) void refreshIdentity();
});
