// Models: the list, and one model's versions with lineage to their job and aliases.
import { ApiError } from "../problem";
import { call, enc, query } from "../api";
import { empty, errorBox, h, keyValues, link } from "../dom";
import { age, bytes, metric, timestamp } from "../format";
import type { Model, ModelVersion } from "../types";

function table(headers: string[], rows: HTMLElement[], testid: string): HTMLElement {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "table", "data-testid": testid },
      h("thead", null, h("tr", null, headers.map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", null, rows),
    ),
  );
}

function aliasChips(aliases: Record<string, number>): HTMLElement {
  const entries = Object.entries(aliases);
  return entries.length
    ? h("span", { class: "tags" }, entries.map(([alias, version]) => h("span", { class: "chip alias" }, `${alias} → v${version}`)))
    : h("span", { class: "muted" }, "—");
}

export function modelsView(root: HTMLElement) {
  const body = h("div", null, h("p", { class: "muted" }, "Loading…"));
  root.append(h("div", { class: "page-head" }, h("h1", null, "Models")), body);
  let stopped = false;
  call<{ models: Model[]; total: number }>(`/v1/models${query({ page_size: 100 })}`)
    .then(({ models, total }) => {
      if (stopped) return;
      if (!models.length) {
        body.replaceChildren(
          empty(
            "No models yet",
            "Register a job's output with ",
            h("code", null, 'client.models.register("churn", job)'),
            " or upload a file with ",
            h("code", null, "mlp models upload"),
            ".",
          ),
        );
        return;
      }
      body.replaceChildren(
        table(
          ["Model", "Framework", "Latest", "Aliases", "Updated"],
          models.map((model) =>
            h(
              "tr",
              { "data-model": model.name },
              h("td", null, link(`/ui/models/${enc(model.name)}`, model.name), model.description ? h("div", { class: "muted small" }, model.description) : null),
              h("td", null, model.framework),
              h("td", { class: "num" }, model.latest_version ? `v${model.latest_version}` : "—"),
              h("td", null, aliasChips(model.aliases)),
              h("td", { class: "num", title: model.updated_at }, age(model.updated_at)),
            ),
          ),
          "models-table",
        ),
        ...(total > models.length ? [h("p", { class: "muted" }, `Showing ${models.length} of ${total} models.`)] : []),
      );
    })
    .catch((error: unknown) => body.replaceChildren(errorBox(error)));
  return () => {
    stopped = true;
  };
}

export function modelView(root: HTMLElement, params: Record<string, string>) {
  const name = params.name ?? "";
  const head = h(
    "div",
    { class: "page-head" },
    h("div", null, h("div", { class: "crumbs" }, link("/ui/models", "Models"), " / ", name), h("h1", null, name)),
  );
  const body = h("div", null, h("p", { class: "muted" }, "Loading…"));
  root.append(head, body);
  Promise.all([
    call<Model>(`/v1/models/${enc(name)}`),
    call<{ versions: ModelVersion[]; total: number }>(`/v1/models/${enc(name)}/versions${query({ page_size: 100 })}`),
  ])
    .then(([model, { versions }]) => {
      const details = h(
        "section",
        { class: "card" },
        h("h2", null, "Model"),
        keyValues([
          ["Framework", model.framework],
          ["Description", model.description || "—"],
          ["Aliases", aliasChips(model.aliases)],
          ["Tags", Object.keys(model.tags).length ? Object.entries(model.tags).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`)) : "—"],
          ["Created", timestamp(model.created_at)],
        ]),
      );
      const rows = versions.map((version) => {
        const lineage = version.lineage;
        const scores = Object.entries(lineage?.metrics ?? {});
        return h(
          "tr",
          { "data-version": version.version },
          h("td", { class: "num" }, `v${version.version}`),
          h("td", null, version.aliases.length ? version.aliases.map((alias) => h("span", { class: "chip alias" }, alias)) : h("span", { class: "muted" }, "—")),
          h(
            "td",
            null,
            lineage
              ? [link(`/ui/jobs/${enc(lineage.job_id)}`, lineage.job_name), h("div", { class: "muted mono small" }, lineage.job_id)]
              : h("span", { class: "muted" }, version.source ? `${version.source}` : "uploaded"),
          ),
          h("td", null, scores.length ? scores.map(([k, v]) => h("span", { class: "chip" }, `${k}=${metric(v)}`)) : "—"),
          h("td", null, `${version.format} · ${bytes(version.size_bytes)}`),
          h("td", { class: "num", title: version.created_at }, age(version.created_at)),
        );
      });
      body.replaceChildren(
        h("div", { class: "grid" }, details),
        h(
          "section",
          { class: "card wide" },
          h("h2", null, "Versions"),
          versions.length
            ? table(["Version", "Aliases", "Trained by (lineage)", "Metrics", "Artifact", "Created"], rows, "versions-table")
            : empty("No versions yet", "Add one with ", h("code", null, `client.models.register("${name}", job)`), "."),
        ),
      );
    })
    .catch((error: unknown) => {
      if (error instanceof ApiError && error.status === 404) {
        body.replaceChildren(empty("Model not found", "No model ", h("code", null, name), " in your tenant. ", link("/ui/models", "Back to models"), "."));
      } else {
        body.replaceChildren(errorBox(error));
      }
    });
}
