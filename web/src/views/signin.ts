import { call, credentials } from "../api";
import { errorBox, h } from "../dom";
import { navigate } from "../router";
import type { Me } from "../types";

export function signInView(root: HTMLElement, search: URLSearchParams, signedIn: () => void): void {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "mlp_…",
    required: true,
    "aria-describedby": "key-help",
  }) as HTMLInputElement;
  const message = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in") as HTMLButtonElement;
  const form = h(
    "form",
    { class: "card signin", novalidate: true },
    h("h1", null, h("span", { class: "logo" }), "ml-platform"),
    h("p", { class: "muted" }, "Sign in with an API key of your tenant."),
    h("label", { for: "api-key" }, "API key"),
    input,
    h(
      "p",
      { id: "key-help", class: "help" },
      h("code", null, "mlp server"),
      " prints the first key and saves it to your credentials file; ",
      h("code", null, "mlp admin create-api-key"),
      " makes more. The key stays in this tab only (session storage).",
    ),
    message,
    button,
  );
  if (search.get("expired")) {
    message.replaceChildren(errorBox(new Error("Your API key was not accepted: sign in again.")));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      message.replaceChildren(errorBox(new Error("Enter an API key (it starts with mlp_).")));
      input.focus();
      return;
    }
    button.disabled = true;
    call<Me>("/v1/me", { key })
      .then(() => {
        credentials.set(key);
        signedIn();
        const next = search.get("next");
        navigate(next && next.startsWith("/ui/") && !next.startsWith("/ui/signin") ? next : "/jobs");
      })
      .catch((error: unknown) => {
        message.replaceChildren(errorBox(error));
        input.select();
      })
      .finally(() => {
        button.disabled = false;
      });
  });
  root.append(h("div", { class: "signin-wrap" }, form));
  input.focus();
}
