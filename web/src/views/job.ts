// One job: spec, status history, live logs and metric charts over the WebSocket, cancel.
import { ApiError } from "../problem";
import { call, credentials, enc, query } from "../api";
import { MetricChart } from "../chart";
import { badge, empty, errorBox, h, keyValues, link } from "../dom";
import { age, duration, metric, timestamp } from "../format";
import { LogBuffer, MetricSeries } from "../series";
import { JobStream, streamUrl, type StreamState } from "../stream";
import type { Model, ModelVersion, StreamMessage, TrainingJob } from "../types";
import { pendingText } from "./jobs";

interface HistoryPage {
  metrics: { id: number; name: string; step?: number | null; value: number; timestamp: string }[];
  has_more: boolean;
  next_after_id?: number | null;
}

const MAX_LOG_NODES = 5000;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function specRows(job: TrainingJob): [string, string | HTMLElement][] {
  const spec = job.spec;
  const compute = spec.compute ?? {};
  const rows: [string, string | HTMLElement][] = [
    ["Framework", spec.framework],
    ["Image", spec.docker_image],
    ["Entrypoint", h("code", null, spec.entrypoint)],
    ["Data", h("code", null, spec.data_path)],
    ["Output", h("code", null, spec.output_path)],
    [
      "Compute",
      Object.entries(compute)
        .filter(([, value]) => value !== null && value !== undefined)
        .map(([key, value]) => `${key}=${String(value)}`)
        .join(", ") || "—",
    ],
    ["Max retries", String(spec.max_retries ?? 0)],
    ["Max runtime", spec.max_runtime_seconds ? `${spec.max_runtime_seconds}s` : "—"],
    ["Source", spec.source ? h("code", { class: "small" }, spec.source.slice(0, 19) + "…") : "—"],
    ["Created by", job.created_by],
  ];
  const params = Object.entries(spec.hyperparameters ?? {});
  rows.push([
    "Hyperparameters",
    params.length
      ? h("span", { class: "tags" }, params.map(([k, v]) => h("span", { class: "chip" }, `${k}=${JSON.stringify(v)}`)))
      : "—",
  ]);
  const tags = Object.entries(spec.tags ?? {});
  rows.push([
    "Tags",
    tags.length ? h("span", { class: "tags" }, tags.map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`))) : "—",
  ]);
  // env_vars is write-only in the API; should a value ever arrive, only its names are shown
  const envNames = Object.keys(spec.env_vars ?? {});
  if (envNames.length) rows.push(["Env vars", `${envNames.join(", ")} (values hidden)`]);
  return rows;
}

export function jobView(root: HTMLElement, params: Record<string, string>) {
  const jobId = params.id ?? "";
  const head = h("div", { class: "page-head" }, h("h1", null, "Job"));
  const notice = h("div", { "aria-live": "polite" });
  const overview = h("section", { class: "card" });
  const history = h("section", { class: "card" });
  const usage = h("section", { class: "card" });
  const models = h("section", { class: "card" }, h("h2", null, "Model versions"), h("p", { class: "muted" }, "Looking…"));
  const streamState = h("span", { class: "stream-state", "data-testid": "stream-state" }, "connecting");
  const charts = h("div", { class: "charts", "data-testid": "charts" });
  const metricsSection = h(
    "section",
    { class: "card wide" },
    h("div", { class: "section-head" }, h("h2", null, "Metrics"), streamState),
    charts,
  );
  const follow = h("input", { type: "checkbox", checked: true, id: "follow" }) as HTMLInputElement;
  const logView = h("pre", {
    class: "logs",
    tabindex: "0",
    "data-testid": "logs",
    "aria-label": "Job logs",
    "aria-live": "off",
  });
  logView.append(h("span", { class: "muted placeholder" }, "Waiting for output…"));
  const logsSection = h(
    "section",
    { class: "card wide" },
    h(
      "div",
      { class: "section-head" },
      h("h2", null, "Logs"),
      h("label", { class: "toggle", for: "follow" }, follow, " Follow"),
    ),
    logView,
  );
  root.append(
    head,
    notice,
    h("div", { class: "grid" }, overview, history, h("div", { class: "stack" }, usage, models)),
    metricsSection,
    logsSection,
  );

  const series = new MetricSeries();
  const logs = new LogBuffer(50_000);
  const chartByName = new Map<string, MetricChart>();
  let job: TrainingJob | null = null;
  let stopped = false;
  let stream: JobStream | null = null;

  const dialog = h("dialog", { class: "confirm", "aria-labelledby": "cancel-title" }) as HTMLDialogElement;
  root.append(dialog);

  const renderJob = (current: TrainingJob) => {
    job = current;
    const cancellable = !TERMINAL.has(current.status);
    head.replaceChildren(
      h(
        "div",
        null,
        h("div", { class: "crumbs" }, link("/ui/jobs", "Jobs"), " / ", h("span", { class: "mono" }, current.id)),
        h("h1", null, current.spec.name, " ", badge(current.status)),
      ),
      h("span", { class: "spacer" }),
      ...(cancellable
        ? [h("button", { type: "button", class: "danger", "data-action": "cancel", onclick: confirmCancel }, "Cancel job…")]
        : []),
    );
    const pending = pendingText(current);
    const notes: HTMLElement[] = [];
    if (pending) notes.push(h("div", { class: "note", "data-testid": "why-pending" }, h("strong", null, "Why pending: "), pending));
    if (current.error_message) notes.push(errorBox(new Error(current.error_message)));
    notice.replaceChildren(...notes);
    overview.replaceChildren(
      h("h2", null, "Spec"),
      keyValues([
        ["Created", `${timestamp(current.created_at)} (${age(current.created_at)} ago)`],
        ["Duration", duration(current.started_at, current.completed_at)],
        ...specRows(current),
      ]),
    );
    history.replaceChildren(
      h("h2", null, "Status history"),
      h(
        "ol",
        { class: "timeline" },
        current.status_history.map((step) =>
          h(
            "li",
            null,
            badge(step.status),
            h("span", { class: "small" }, ` ${timestamp(step.at)}`),
            step.attempt ? h("span", { class: "muted small" }, ` · attempt ${step.attempt}`) : null,
            step.reason ? h("div", { class: "muted small" }, step.reason) : null,
          ),
        ),
      ),
    );
    const used = Object.entries(current.resource_usage ?? {});
    const latest = Object.entries(current.metrics ?? {});
    usage.replaceChildren(
      h("h2", null, "Resources"),
      used.length
        ? keyValues(used.map(([key, value]) => [key.replaceAll("_", " "), metric(value)]))
        : h("p", { class: "muted" }, current.status === "pending" ? "Measured once the job runs." : "No usage recorded."),
      h("h2", null, "Latest metrics"),
      latest.length
        ? keyValues(latest.map(([key, value]) => [key, metric(value)]))
        : h("p", { class: "muted" }, "None logged yet: call runtime.log_metrics() in the script."),
    );
  };

  const refresh = async () => {
    try {
      renderJob(await call<TrainingJob>(`/v1/jobs/training/${enc(jobId)}`));
    } catch (error) {
      if (stopped) return;
      if (error instanceof ApiError && error.status === 404) {
        root.replaceChildren(
          empty("Job not found", "No job ", h("code", null, jobId), " in your tenant. ", link("/ui/jobs", "Back to jobs"), "."),
        );
        stream?.stop();
        stopped = true;
        return;
      }
      notice.replaceChildren(errorBox(error));
    }
  };

  function confirmCancel(): void {
    if (!job) return;
    const message = h("div", { "aria-live": "polite" });
    const yes = h("button", { type: "button", class: "danger", "data-action": "confirm-cancel" }, "Cancel job") as HTMLButtonElement;
    const no = h("button", { type: "button", "data-action": "keep" }, "Keep running");
    dialog.replaceChildren(
      h("h2", { id: "cancel-title" }, `Cancel ${job.spec.name}?`),
      h("p", null, "The job's processes are stopped and its status becomes cancelled. This cannot be undone."),
      message,
      h("div", { class: "actions" }, no, yes),
    );
    no.addEventListener("click", () => dialog.close());
    yes.addEventListener("click", () => {
      yes.disabled = true;
      call<void>(`/v1/jobs/training/${enc(jobId)}`, { method: "DELETE" })
        .then(async () => {
          dialog.close();
          await refresh();
        })
        .catch((error: unknown) => {
          message.replaceChildren(errorBox(error));
          yes.disabled = false;
        });
    });
    dialog.showModal();
    no.focus();
  }

  let pendingLines: HTMLElement[] = [];
  let logFrame = 0;
  const flushLogs = () => {
    logFrame = 0;
    if (!pendingLines.length) return;
    const atBottom = logView.scrollHeight - logView.scrollTop - logView.clientHeight < 24;
    logView.querySelector(".placeholder")?.remove();
    logView.append(...pendingLines);
    pendingLines = [];
    while (logView.childElementCount > MAX_LOG_NODES) logView.firstElementChild?.remove();
    if (follow.checked && (atBottom || logView.dataset.followed !== "1")) {
      logView.scrollTop = logView.scrollHeight;
      logView.dataset.followed = "1";
    }
    logView.dataset.lines = String(logs.lines.length);
  };

  const onMessage = (message: StreamMessage) => {
    if (message.type === "log") {
      if (!logs.add(message.id, message.line, message.stream)) return;
      pendingLines.push(
        h("span", { class: message.stream === "stderr" ? "line err" : "line", "data-id": message.id }, message.line, "\n"),
      );
      if (!logFrame) logFrame = requestAnimationFrame(flushLogs);
    } else if (message.type === "metric") {
      if (!series.add(message)) return;
      let chart = chartByName.get(message.name);
      if (!chart) {
        charts.querySelector(".empty")?.remove();
        chart = new MetricChart(message.name, series.get(message.name) ?? { x: [], y: [] });
        chartByName.set(message.name, chart);
        charts.append(chart.element);
      }
      chart.changed();
    } else {
      void refresh();
    }
  };
  const onState = (state: StreamState, detail?: string) => {
    streamState.textContent = detail ? `${state}: ${detail}` : state;
    streamState.dataset.state = state;
    if (state === "ended" && !chartByName.size) {
      charts.replaceChildren(empty("No metrics", "This job logged none. Log them with runtime.log_metrics({...}, step=n)."));
    }
    if (state === "ended" && !logs.lines.length) {
      logView.replaceChildren(h("span", { class: "muted placeholder" }, "(no output)"));
    }
  };
  follow.addEventListener("change", () => {
    if (follow.checked) logView.scrollTop = logView.scrollHeight;
  });
  charts.append(empty("Waiting for metrics", "Points appear here as the job logs them."));

  // the points logged so far also come in pages of the REST history (10,000 a request, drawn
  // as each arrives), much faster than the WebSocket's replay of them one message each
  const loadHistory = async () => {
    let after = 0;
    for (;;) {
      const page = await call<HistoryPage>(
        `/v1/jobs/training/${enc(jobId)}/metrics/history${query({ after_id: after, limit: 10000 })}`,
      );
      if (stopped) return;
      for (const point of page.metrics) onMessage({ type: "metric", ...point });
      if (!page.has_more || page.next_after_id === null || page.next_after_id === undefined) return;
      after = page.next_after_id;
    }
  };

  // a finished job has nothing left to stream: its logs and points come from REST alone
  const loadFinished = async () => {
    const { logs: lines } = await call<{ logs: { id: number; line: string; stream: string }[] }>(
      `/v1/jobs/training/${enc(jobId)}/logs${query({ tail: 10000 })}`,
    );
    for (const line of lines) {
      onMessage({ type: "log", id: line.id, line: line.line, stream: line.stream, timestamp: "" });
    }
    await loadHistory();
  };

  void refresh().then(() => {
    if (stopped || !job) return;
    void findVersions(jobId, models);
    if (TERMINAL.has(job.status)) {
      onState("connecting");
      loadFinished()
        .then(() => onState("ended"))
        .catch((error: unknown) => {
          if (!stopped) notice.append(errorBox(error));
        });
      return;
    }
    // both deliver points in id order from the first; MetricSeries keeps each id once
    void loadHistory().catch((error: unknown) => {
      if (!stopped) notice.append(errorBox(error));
    });
    stream = new JobStream({
      url: streamUrl(location, jobId),
      apiKey: credentials.get() ?? "",
      onMessage,
      onState,
    });
    (window as unknown as { __mlpStream?: JobStream }).__mlpStream = stream;
    stream.start();
  });

  return () => {
    stopped = true;
    stream?.stop();
    if (logFrame) cancelAnimationFrame(logFrame);
    for (const chart of chartByName.values()) chart.destroy();
    if (dialog.open) dialog.close();
  };
}

/** The model versions whose lineage names this job (scans the tenant's first 100 models). */
async function findVersions(jobId: string, section: HTMLElement): Promise<void> {
  try {
    const { models } = await call<{ models: Model[] }>(`/v1/models${query({ page_size: 100 })}`);
    const found: ModelVersion[] = [];
    await Promise.all(
      models.map(async (model) => {
        const { versions } = await call<{ versions: ModelVersion[] }>(
          `/v1/models/${enc(model.name)}/versions${query({ page_size: 100 })}`,
        );
        found.push(...versions.filter((version) => version.lineage?.job_id === jobId));
      }),
    );
    found.sort((a, b) => a.model.localeCompare(b.model) || a.version - b.version);
    section.replaceChildren(
      h("h2", null, "Model versions"),
      found.length
        ? h(
            "ul",
            { class: "plain", "data-testid": "job-versions" },
            found.map((version) =>
              h("li", null, link(`/ui/models/${enc(version.model)}`, `${version.model} v${version.version}`), version.aliases.length ? h("span", { class: "muted" }, ` (${version.aliases.join(", ")})`) : null),
            ),
          )
        : h("p", { class: "muted" }, "None registered from this job. After it succeeds: ", h("code", null, `client.models.register("name", job)`), "."),
    );
  } catch (error) {
    section.replaceChildren(h("h2", null, "Model versions"), errorBox(error));
  }
}
