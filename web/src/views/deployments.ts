// Deployments: status at a glance, and a small form that calls V2 REST inference.
import { ApiError } from "../problem";
import { call, enc, query } from "../api";
import { badge, empty, errorBox, h, keyValues, link } from "../dom";
import { age, metric, timestamp } from "../format";
import type { Deployment, ModelVersion } from "../types";

const REFRESH_MS = 3000;

function versionText(deployment: Deployment): string {
  const serving = deployment.serving_version ? `serving v${deployment.serving_version}` : "not serving yet";
  const wanted = deployment.alias ? `alias ${deployment.alias}` : deployment.version ? `v${deployment.version}` : "latest";
  return `${wanted} · ${serving}`;
}

export function deploymentsView(root: HTMLElement) {
  const body = h("div", null, h("p", { class: "muted" }, "Loading…"));
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Deployments"), h("span", { class: "live-dot", title: "Live: refreshes every 3 s" })),
    body,
  );
  let stopped = false;
  let timer = 0;
  const load = async () => {
    try {
      const { deployments } = await call<{ deployments: Deployment[] }>(`/v1/deployments${query({ page_size: 100 })}`);
      if (stopped) return;
      body.replaceChildren(
        deployments.length
          ? h(
              "div",
              { class: "table-wrap" },
              h(
                "table",
                { class: "table", "data-testid": "deployments-table" },
                h("thead", null, h("tr", null, ["Deployment", "Model", "Version", "Status", "Updated"].map((t) => h("th", { scope: "col" }, t)))),
                h(
                  "tbody",
                  null,
                  deployments.map((deployment) =>
                    h(
                      "tr",
                      { "data-deployment": deployment.name },
                      h("td", null, link(`/ui/deployments/${enc(deployment.name)}`, deployment.name)),
                      h("td", null, link(`/ui/models/${enc(deployment.model)}`, deployment.model)),
                      h("td", null, versionText(deployment)),
                      h("td", null, badge(deployment.status), deployment.status_message ? h("div", { class: "muted small" }, deployment.status_message) : null),
                      h("td", { class: "num", title: deployment.updated_at }, age(deployment.updated_at)),
                    ),
                  ),
                ),
              ),
            )
          : empty(
              "No deployments yet",
              "Serve a model version with ",
              h("code", null, 'client.deploy("churn", version=1)'),
              " or ",
              h("code", null, "mlp deploy"),
              "; predictions go over gRPC or V2 REST.",
            ),
      );
    } catch (error) {
      if (!stopped) body.replaceChildren(errorBox(error));
    }
    if (!stopped) timer = window.setTimeout(() => void load(), REFRESH_MS);
  };
  void load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

interface InferOutput {
  name: string;
  shape: number[];
  data: number[];
}

export function deploymentView(root: HTMLElement, params: Record<string, string>) {
  const name = params.name ?? "";
  const head = h(
    "div",
    { class: "page-head" },
    h("div", null, h("div", { class: "crumbs" }, link("/ui/deployments", "Deployments"), " / ", name), h("h1", null, name)),
  );
  const details = h("section", { class: "card" }, h("p", { class: "muted" }, "Loading…"));
  const predict = h("section", { class: "card" }, h("h2", null, "Try a prediction"), h("p", { class: "muted" }, "Waiting for the deployment…"));
  root.append(head, h("div", { class: "grid two" }, details, predict));
  let stopped = false;
  let timer = 0;
  let formFor: number | null = null;

  const load = async () => {
    try {
      const deployment = await call<Deployment>(`/v1/deployments/${enc(name)}`);
      if (stopped) return;
      head.querySelector("h1")?.replaceChildren(name, " ", badge(deployment.status));
      details.replaceChildren(
        h("h2", null, "Deployment"),
        keyValues([
          ["Model", link(`/ui/models/${enc(deployment.model)}`, deployment.model)],
          ["Version", versionText(deployment)],
          ["Status", deployment.status_message ? `${deployment.status}: ${deployment.status_message}` : deployment.status],
          ["Created", timestamp(deployment.created_at)],
          ["Updated", `${timestamp(deployment.updated_at)} (${age(deployment.updated_at)} ago)`],
          ["V2 REST", h("code", null, `POST /v2/models/${name}/infer`)],
        ]),
      );
      const version = deployment.serving_version ?? null;
      if (deployment.status === "ready" && version !== null && formFor !== version) {
        formFor = version;
        await renderForm(deployment, version);
      } else if (deployment.status !== "ready" && formFor === null) {
        predict.replaceChildren(
          h("h2", null, "Try a prediction"),
          deployment.status === "failed"
            ? errorBox(new Error(deployment.status_message || "the model failed to load"))
            : h("p", { class: "muted" }, `The deployment is ${deployment.status}; the form appears when it is ready.`),
        );
      }
    } catch (error) {
      if (stopped) return;
      if (error instanceof ApiError && error.status === 404) {
        root.replaceChildren(empty("Deployment not found", "No deployment ", h("code", null, name), " in your tenant. ", link("/ui/deployments", "Back to deployments"), "."));
        stopped = true;
        return;
      }
      details.replaceChildren(errorBox(error));
    }
    if (!stopped) timer = window.setTimeout(() => void load(), REFRESH_MS);
  };

  const renderForm = async (deployment: Deployment, versionNumber: number) => {
    let features: string[] = [];
    let labels: string[] = [];
    try {
      const version = await call<ModelVersion>(`/v1/models/${enc(deployment.model)}/versions/${versionNumber}`);
      features = (version.signature?.input_features ?? []).map((feature) => feature.name);
      labels = version.signature?.output_labels ?? [];
    } catch (error) {
      predict.replaceChildren(h("h2", null, "Try a prediction"), errorBox(error));
      return;
    }
    if (!features.length) {
      predict.replaceChildren(
        h("h2", null, "Try a prediction"),
        empty("No input signature", "This version has no signature, so the form cannot name its inputs. Register it with one (input_features)."),
      );
      return;
    }
    const inputs = features.map((feature, index) =>
      h("input", { id: `feature-${index}`, name: feature, type: "number", step: "any", value: "0", required: true, inputmode: "decimal" }) as HTMLInputElement,
    );
    const result = h("div", { "aria-live": "polite", "data-testid": "prediction" });
    const submit = h("button", { type: "submit", class: "primary" }, "Predict") as HTMLButtonElement;
    const form = h(
      "form",
      { class: "predict" },
      h(
        "div",
        { class: "feature-grid" },
        features.map((feature, index) => h("label", { class: "field", for: `feature-${index}` }, h("span", null, feature), inputs[index])),
      ),
      h("div", { class: "actions" }, submit),
      result,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const bad = inputs.find((input) => input.value.trim() === "" || !Number.isFinite(Number(input.value)));
      if (bad) {
        result.replaceChildren(errorBox(new Error(`${bad.name} must be a number`)));
        bad.focus();
        return;
      }
      submit.disabled = true;
      const body = {
        inputs: inputs.map((input) => ({ name: input.name, datatype: "FP64", shape: [1], data: [Number(input.value)] })),
      };
      call<{ outputs: InferOutput[]; model_version?: string }>(`/v2/models/${enc(name)}/infer`, { method: "POST", body })
        .then((answer) => {
          const prediction = answer.outputs.find((output) => output.name === "predictions");
          const probabilities = answer.outputs.find((output) => output.name === "probabilities");
          const value = prediction?.data[0];
          const label = value !== undefined && labels.length ? labels[value] : undefined;
          result.replaceChildren(
            h(
              "div",
              { class: "result" },
              h("div", { class: "result-value", "data-testid": "prediction-value" }, value === undefined ? "—" : label ?? metric(value)),
              label !== undefined && label !== String(value) ? h("div", { class: "muted small" }, `class ${value}`) : null,
              probabilities
                ? h(
                    "ul",
                    { class: "plain probs" },
                    probabilities.data.map((p, index) => h("li", null, h("span", null, labels[index] ?? `class ${index}`), h("meter", { min: 0, max: 1, value: p }), h("span", { class: "num" }, metric(p)))),
                  )
                : null,
              answer.model_version ? h("div", { class: "muted small" }, `model version ${answer.model_version}`) : null,
            ),
          );
        })
        .catch((error: unknown) => result.replaceChildren(errorBox(error)))
        .finally(() => {
          submit.disabled = false;
        });
    });
    predict.replaceChildren(
      h("h2", null, "Try a prediction"),
      h("p", { class: "muted small" }, `Calls V2 REST inference on v${versionNumber}: one row, one FP64 tensor per feature.`),
      form,
    );
  };

  void load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
