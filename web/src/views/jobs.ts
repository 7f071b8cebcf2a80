// The jobs table: status/framework/tags filters, server-side pages, live refresh in place.
import { call, query } from "../api";
import { badge, empty, errorBox, h, link } from "../dom";
import { age, duration, formatTags, parseTags } from "../format";
import { navigate } from "../router";
import { FRAMEWORKS, JOB_STATUSES, type JobList, type TrainingJob } from "../types";

const PAGE_SIZE = 50;
const REFRESH_MS = 3000;

export function pendingText(job: TrainingJob): string | null {
  if (job.status !== "pending") return null;
  const parts: string[] = [];
  if (job.queue_position !== null && job.queue_position !== undefined) {
    parts.push(`#${job.queue_position} in queue`);
  }
  if (job.pending_reason) parts.push(job.pending_reason);
  return parts.length ? parts.join(" · ") : "waiting for the scheduler";
}

function rowKey(job: TrainingJob, now: number): string {
  return JSON.stringify([
    job.status,
    job.pending_reason,
    job.queue_position,
    age(job.created_at, now),
    duration(job.started_at, job.completed_at, now),
  ]);
}

function row(job: TrainingJob, now: number): HTMLTableRowElement {
  const tags = Object.entries(job.spec.tags ?? {});
  const pending = pendingText(job);
  const tr = h(
    "tr",
    { "data-job": job.id },
    h(
      "td",
      null,
      link(`/ui/jobs/${encodeURIComponent(job.id)}`, job.spec.name),
      h("div", { class: "muted mono small" }, job.id),
    ),
    h("td", null, badge(job.status), pending ? h("div", { class: "why small" }, pending) : null),
    h("td", null, job.spec.framework),
    h(
      "td",
      null,
      tags.length
        ? h("div", { class: "tags" }, tags.map(([key, value]) => h("span", { class: "chip" }, `${key}=${value}`)))
        : h("span", { class: "muted" }, "—"),
    ),
    h("td", { class: "num", title: job.created_at }, age(job.created_at, now)),
    h("td", { class: "num" }, duration(job.started_at, job.completed_at, now)),
  ) as HTMLTableRowElement;
  tr.dataset.key = rowKey(job, now);
  return tr;
}

export function jobsView(root: HTMLElement, _params: Record<string, string>, search: URLSearchParams) {
  const status = search.get("status") ?? "";
  const framework = search.get("framework") ?? "";
  const tagText = search.get("tags") ?? "";
  const page = Math.max(1, Number.parseInt(search.get("page") ?? "1", 10) || 1);

  const select = (name: string, label: string, values: readonly string[], value: string) =>
    h(
      "label",
      { class: "field" },
      h("span", null, label),
      h(
        "select",
        { name, "data-filter": name },
        h("option", { value: "" }, "All"),
        values.map((item) => h("option", { value: item, selected: item === value }, item)),
      ),
    );
  const tagsInput = h("input", {
    name: "tags",
    value: tagText,
    placeholder: "team=fraud,env=prod",
    "aria-label": "Tags filter",
  }) as HTMLInputElement;
  const filterError = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "filters", role: "search" },
    select("status", "Status", JOB_STATUSES, status),
    select("framework", "Framework", FRAMEWORKS, framework),
    h("label", { class: "field grow" }, h("span", null, "Tags"), tagsInput),
    h("button", { type: "submit" }, "Apply"),
  );
  const apply = (nextPage = 1) => {
    const data = new FormData(form as HTMLFormElement);
    const parsed = parseTags(String(data.get("tags") ?? ""));
    if ("error" in parsed) {
      filterError.replaceChildren(errorBox(new Error(parsed.error)));
      return;
    }
    navigate(
      `/jobs${query({
        status: String(data.get("status") ?? ""),
        framework: String(data.get("framework") ?? ""),
        tags: formatTags(parsed.tags),
        page: nextPage > 1 ? nextPage : null,
      })}`,
    );
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.addEventListener("change", (event) => {
    if ((event.target as Element).tagName === "SELECT") apply();
  });

  const summary = h("span", { class: "muted", "data-testid": "jobs-summary" }, "Loading…");
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "table", "data-testid": "jobs-table" },
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ["Job", "Status", "Framework", "Tags", "Age", "Duration"].map((title) =>
          h("th", { scope: "col" }, title),
        ),
      ),
    ),
    tbody,
  );
  const body = h("div", { class: "table-wrap" });
  const prev = h("button", { type: "button", onclick: () => apply(page - 1) }, "← Newer");
  const next = h("button", { type: "button", onclick: () => apply(page + 1) }, "Older →");
  const pager = h("div", { class: "pager" }, summary, h("span", { class: "spacer" }), prev, next);
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Training jobs"), h("span", { class: "live-dot", title: "Live: refreshes every 3 s" })),
    form,
    filterError,
    body,
    pager,
  );

  let stopped = false;
  let timer = 0;
  let controller: AbortController | null = null;
  const filtered = Boolean(status || framework || tagText);

  const load = async () => {
    controller = new AbortController();
    try {
      const list = await call<JobList>(
        `/v1/jobs/training${query({ status, framework, tags: tagText, page, page_size: PAGE_SIZE })}`,
        { signal: controller.signal },
      );
      if (stopped) return;
      render(list);
    } catch (error) {
      if (stopped || (error instanceof DOMException && error.name === "AbortError")) return;
      body.replaceChildren(errorBox(error));
      summary.textContent = "";
    }
    if (!stopped) timer = window.setTimeout(() => void load(), REFRESH_MS);
  };

  const render = (list: JobList) => {
    const now = Date.now();
    if (list.jobs.length === 0) {
      tbody.replaceChildren();
      body.replaceChildren(
        filtered
          ? empty("No jobs match these filters", "Clear a filter or choose another status.")
          : empty(
              "No training jobs yet",
              "Submit one with ",
              h("code", null, "mlp train"),
              " or ",
              h("code", null, 'client.train(entrypoint="train.py", source_dir=".")'),
              "; it appears here as soon as it is queued.",
            ),
      );
    } else {
      if (body.firstChild !== table) body.replaceChildren(table);
      // keep rows that did not change (focus and selection survive a refresh)
      const existing = new Map<string, HTMLTableRowElement>();
      for (const tr of Array.from(tbody.children) as HTMLTableRowElement[]) {
        existing.set(tr.dataset.job ?? "", tr);
      }
      const rows = list.jobs.map((job) => {
        const old = existing.get(job.id);
        return old && old.dataset.key === rowKey(job, now) ? old : row(job, now);
      });
      rows.forEach((tr, index) => {
        if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] ?? null);
      });
      while (tbody.children.length > rows.length) tbody.lastElementChild?.remove();
    }
    const first = list.total === 0 ? 0 : (list.page - 1) * list.page_size + 1;
    const last = (list.page - 1) * list.page_size + list.jobs.length;
    summary.textContent = `${first.toLocaleString()}–${last.toLocaleString()} of ${list.total.toLocaleString()} jobs`;
    pager.hidden = list.total === 0;
    (prev as HTMLButtonElement).disabled = list.page <= 1;
    (next as HTMLButtonElement).disabled = !list.has_more;
    root.dataset.rendered = String(list.jobs.length);
  };

  void load();
  return () => {
    stopped = true;
    controller?.abort();
    window.clearTimeout(timer);
  };
}
