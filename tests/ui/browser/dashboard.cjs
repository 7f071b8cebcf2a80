// The dashboard end to end in headless Chromium (driven by tests/ui/test_dashboard_browser.py).
// argv[2]: JSON config (base URL, API keys, job specs). Prints one JSON report as its last line.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { chromium } = require("playwright-core");

const config = JSON.parse(process.argv[2]);
const base = config.baseUrl;
const origin = new URL(base);
const shots = config.artifacts;
fs.mkdirSync(shots, { recursive: true });

const report = { requests: 0, offHost: [], consoleErrors: [] };

const t0 = Date.now();
function log(...args) {
  process.stderr.write(`[dashboard ${((Date.now() - t0) / 1000).toFixed(1)}s] ${args.join(" ")}\n`);
}

async function api(key, method, route, body) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: { "X-API-Key": key, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function watch(page, label) {
  const record = (url) => {
    report.requests += 1;
    const parsed = new URL(url);
    if (parsed.protocol === "data:" || parsed.protocol === "about:") return;
    if (parsed.hostname !== "127.0.0.1") report.offHost.push(`${label}: ${url}`);
  };
  page.on("request", (request) => record(request.url()));
  page.on("websocket", (socket) => record(socket.url()));
  page.on("pageerror", (error) => report.consoleErrors.push(`${label}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    // a 404 the page asked for on purpose (another tenant's object) is logged by Chromium
    if (text.startsWith("Failed to load resource")) return;
    report.consoleErrors.push(`${label}: ${text}`);
  });
}

async function newPage(browser, label, options = {}) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    colorScheme: "light",
    ...options,
  });
  const page = await context.newPage();
  watch(page, label);
  return page;
}

async function signIn(page, key) {
  await page.goto(`${base}/ui/`);
  await page.waitForURL(/\/ui\/signin/);
  await page.fill("#api-key", key);
  await page.press("#api-key", "Enter");
  // signed in = the jobs page rendered; its summary is hidden when the tenant has no jobs
  // (the empty state shows instead), so wait for it in the DOM, not for it to be visible
  await page.waitForSelector("[data-testid=jobs-summary]", { state: "attached" });
}

async function shot(page, name, fullPage = true) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage });
  log("screenshot", name);
}

const count = (page, selector) => page.locator(selector).count();

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: (process.env.CHROMIUM_ARGS || "").split(" ").filter(Boolean),
  });
  try {
    // -- sign in ------------------------------------------------------------------------------
    const page = await newPage(browser, "owner");
    await page.goto(`${base}/ui/`);
    await page.waitForURL(/\/ui\/signin/);
    await page.fill("#api-key", "mlp_not_a_real_key");
    await page.press("#api-key", "Enter");
    await page.waitForSelector(".error");
    await shot(page, "signin");
    await page.fill("#api-key", config.owner);
    await page.press("#api-key", "Enter");
    await page.waitForSelector("[data-testid=jobs-table]");
    await page.waitForFunction(() => document.querySelector("[data-testid=who]")?.textContent);
    await shot(page, "jobs");

    // -- a job submitted through the API, watched live on its page ----------------------------
    const live = await api(config.owner, "POST", "/v1/jobs/training", config.liveJob);
    const long = await api(config.owner, "POST", "/v1/jobs/training", config.longJob);
    await page.waitForSelector(`tr[data-job="${live.id}"]`); // the list refreshes by itself
    await page.click(`tr[data-job="${live.id}"] a`);
    await page.waitForSelector(`[data-testid=logs] .line`);
    await page.waitForFunction(() => document.querySelectorAll(".chart").length === 2);
    const sample = () =>
      page.evaluate(() => ({
        lines: document.querySelectorAll("[data-testid=logs] .line").length,
        points: [...document.querySelectorAll(".chart")].reduce(
          (sum, chart) => sum + Number(chart.dataset.points || 0),
          0,
        ),
        status: document.querySelector("h1 .badge")?.dataset.status,
      }));
    const first = await sample();
    await page.waitForFunction(
      (before) =>
        [...document.querySelectorAll(".chart")].reduce(
          (sum, chart) => sum + Number(chart.dataset.points || 0),
          0,
        ) > before.points + 4 &&
        document.querySelectorAll("[data-testid=logs] .line").length > before.lines,
      first,
    );
    const later = await sample();
    const status = (await api(config.owner, "GET", `/v1/jobs/training/${live.id}`)).status;
    await shot(page, "job-live");
    // drop the WebSocket as a network failure would: the page reconnects and resumes
    await page.evaluate(() => window.__mlpStream.drop());
    await page.waitForSelector("[data-testid=stream-state][data-state=reconnecting]", {
      timeout: 5000,
    }).catch(() => undefined);
    await page.waitForSelector("[data-testid=stream-state][data-state=ended]", { timeout: 90000 });
    await page.waitForSelector("h1 .badge[data-status=succeeded]");
    const after = await page.evaluate(() => ({
      state: document.querySelector("[data-testid=stream-state]").dataset.state,
      lineIds: [...document.querySelectorAll("[data-testid=logs] .line")].map((l) =>
        Number(l.dataset.id),
      ),
      points: [...document.querySelectorAll(".chart")].reduce(
        (sum, chart) => sum + Number(chart.dataset.points || 0),
        0,
      ),
    }));
    await shot(page, "job-done");
    report.live = {
      id: live.id,
      statusWhileWatching: status === "running" && later.status === "running" ? "running" : status,
      firstLogLines: first.lines,
      laterLogLines: later.lines,
      firstPoints: first.points,
      laterPoints: later.points,
      charts: await page.$$eval(".chart", (charts) => charts.map((c) => c.dataset.metric)),
      afterReconnect: after,
    };
    log("live job watched", JSON.stringify({ first, later }));

    // -- cancel a second job from its page ----------------------------------------------------
    // keyboard only: focus the job's link in the table, Enter opens its page
    await page.goto(`${base}/ui/jobs`);
    await page.focus(`tr[data-job="${long.id}"] a`);
    await page.keyboard.press("Enter");
    await page.waitForURL(new RegExp(`/ui/jobs/${long.id}$`));
    await page.waitForSelector("[data-action=cancel]");
    await page.waitForSelector("h1 .badge[data-status=running]", { timeout: 60000 });
    // Escape closes the confirmation and leaves the job running
    await page.click("[data-action=cancel]");
    await page.waitForSelector("dialog[open] [data-action=keep]:focus");
    await page.keyboard.press("Escape");
    await page.waitForSelector("dialog[open]", { state: "detached" }).catch(() => undefined);
    const escapeKept = !(await page.isVisible("dialog[open]")) &&
      (await api(config.owner, "GET", `/v1/jobs/training/${long.id}`)).status === "running";
    await page.click("[data-action=cancel]");
    await page.waitForSelector("dialog[open] [data-action=confirm-cancel]");
    const dialogShown = await page.isVisible("dialog[open]");
    await shot(page, "job-cancel-dialog");
    await page.click("[data-action=confirm-cancel]");
    await page.waitForSelector("h1 .badge[data-status=cancelled]", { timeout: 30000 });
    report.cancelled = {
      id: long.id,
      dialogShown,
      escapeKept,
      badge: await page.getAttribute("h1 .badge", "data-status"),
    };
    await shot(page, "job-cancelled");

    // -- the trained job links to its model version; the model page links back --------------
    await page.goto(`${base}/ui/jobs/${config.trainedJob}`);
    await page.waitForSelector("[data-testid=job-versions] li");
    report.jobVersions = await page.$$eval("[data-testid=job-versions] li a", (links) =>
      links.map((a) => a.textContent),
    );
    await page.click("nav a[href='/ui/models']");
    await page.waitForSelector("[data-testid=models-table]");
    await shot(page, "models");
    await page.click(`tr[data-model="${config.model}"] a`);
    await page.waitForSelector("[data-testid=versions-table]");
    report.model = {
      lineageJob: await page.textContent("tr[data-version='1'] td:nth-child(3) .mono"),
      aliases: await page.$$eval("tr[data-version='1'] .chip.alias", (chips) =>
        chips.map((c) => c.textContent),
      ),
    };
    await shot(page, "model");

    // -- a deployment, and a prediction from its form -----------------------------------------
    await page.click("nav a[href='/ui/deployments']");
    await page.waitForSelector("[data-testid=deployments-table]");
    // the list refreshes by itself until the serving plane has loaded the model
    await page.waitForSelector(
      `tr[data-deployment="${config.deployment}"] .badge[data-status=ready]`,
      { timeout: 120000 },
    );
    await shot(page, "deployments");
    await page.click(`tr[data-deployment="${config.deployment}"] a`);
    await page.waitForSelector("form.predict");
    for (const [name, value] of Object.entries(config.features)) {
      await page.fill(`form.predict input[name="${name}"]`, String(value));
    }
    await page.click("form.predict button[type=submit]");
    await page.waitForSelector("[data-testid=prediction] .result, [data-testid=prediction] .error");
    report.prediction = {
      value: await page.textContent("[data-testid=prediction] .result-value").catch(() => null),
      text: await page.textContent("[data-testid=prediction]"),
    };
    const probabilities = await count(page, "[data-testid=prediction] meter");
    report.prediction.probabilities = probabilities;
    await shot(page, "deployment");

    // -- dark theme (prefers-color-scheme) ----------------------------------------------------
    const dark = await newPage(browser, "dark", { colorScheme: "dark" });
    await signIn(dark, config.owner);
    await dark.goto(`${base}/ui/jobs/${live.id}`);
    await dark.waitForSelector(".chart");
    await dark.waitForSelector("[data-testid=stream-state][data-state=ended]");
    await shot(dark, "job-dark");
    await dark.context().close();

    // -- the second tenant sees none of the first tenant's objects ----------------------------
    const other = await newPage(browser, "other");
    await signIn(other, config.other);
    const ownerIds = [live.id, long.id, config.trainedJob, config.model, config.deployment];
    const seen = [];
    const collect = async () => seen.push(await other.textContent("main"));
    await other.waitForSelector("main .empty");
    const isolation = {
      jobsRows: await count(other, "[data-testid=jobs-table] tbody tr"),
      jobsEmptyState: await other.isVisible("main .empty"),
    };
    await collect();
    await shot(other, "other-jobs");
    await other.click("nav a[href='/ui/models']");
    await other.waitForSelector("main .empty");
    isolation.modelsEmptyState = true;
    await collect();
    await other.click("nav a[href='/ui/deployments']");
    await other.waitForSelector("main .empty");
    isolation.deploymentsEmptyState = true;
    await collect();
    await shot(other, "other-deployments");
    await other.goto(`${base}/ui/jobs/${live.id}`);
    isolation.directJob = await (await other.waitForSelector("main .empty h3 >> text=/not found/")).textContent();
    await shot(other, "other-direct-job");
    await other.goto(`${base}/ui/models/${config.model}`);
    isolation.directModel = await (await other.waitForSelector("main .empty h3 >> text=/not found/")).textContent();
    await other.goto(`${base}/ui/deployments/${config.deployment}`);
    isolation.directDeployment = await (await other.waitForSelector("main .empty h3 >> text=/not found/")).textContent();
    isolation.ownerIdsInPages = ownerIds.filter((id) =>
      seen.some((text) => text.includes(id) && !(id === config.model && false)),
    );
    report.isolation = isolation;
    await other.context().close();

    // -- benchmarks: first render of a 1,000-job list; frames while 100k points stream -------
    const bench = await newPage(browser, "bench");
    await signIn(bench, config.bench);
    await bench.goto("about:blank");
    const started = Date.now();
    await bench.goto(`${base}/ui/jobs`);
    await bench.waitForSelector("main[data-rendered='50'], main [data-rendered='50']").catch(
      () => undefined,
    );
    await bench.waitForFunction(
      () => document.querySelectorAll("[data-testid=jobs-table] tbody tr").length === 50,
    );
    const listFirstRenderMs = await bench.evaluate(() => performance.now());
    const listApiMs = await bench.evaluate(
      () =>
        performance
          .getEntriesByType("resource")
          .filter((entry) => entry.name.includes("/v1/jobs/training?"))
          .map((entry) => entry.duration)[0] ?? -1,
    );
    const listTotal = (await bench.textContent("[data-testid=jobs-summary]")).replace(/^.* (of )/, "$1");
    await shot(bench, "jobs-1000", false);
    const nextStart = await bench.evaluate(() => performance.now());
    await bench.click(".pager button:last-child");
    await bench.waitForFunction(() =>
      document.querySelector("[data-testid=jobs-summary]")?.textContent?.startsWith("51–100"),
    );
    const listNextPageMs = (await bench.evaluate(() => performance.now())) - nextStart;
    log("list bench wall", Date.now() - started, "ms");
    await bench.context().close();

    log("list bench done");
    await page.goto(`${base}/ui/jobs`);
    await page.waitForSelector("[data-testid=jobs-table]");
    await page.evaluate(() => {
      const frames = [];
      let last = performance.now();
      const tick = (now) => {
        frames.push(now - last);
        last = now;
        if (!window.__frames.stop) requestAnimationFrame(tick);
      };
      window.__frames = { frames, stop: false };
      requestAnimationFrame(tick);
    });
    // a client-side navigation (the frame sampler keeps running) to the job with 100k points
    const streamStart = await page.evaluate(() => {
      window.__frames.startIndex = window.__frames.frames.length;
      return performance.now();
    });
    await page.click(`a[href='/ui/jobs/${config.streamJob}']`);
    await page.waitForFunction(
      (total) => Number(document.querySelector(".chart")?.dataset.points || 0) >= total,
      config.streamPoints,
      { timeout: 120000, polling: "raf" },
    );
    const frames = await page.evaluate((begin) => {
      window.__frames.stop = true;
      return {
        all: window.__frames.frames.slice(window.__frames.startIndex),
        seconds: (performance.now() - begin) / 1000,
      };
    }, streamStart);
    const sorted = [...frames.all].sort((a, b) => a - b);
    const mean = sorted.reduce((s, v) => s + v, 0) / Math.max(1, sorted.length);
    await shot(page, "job-100k");
    report.bench = {
      listFirstRenderMs,
      listNextPageMs,
      listApiMs,
      listRows: 50,
      listTotal,
      streamedPoints: Number(await page.getAttribute(".chart", "data-points")),
      streamSeconds: frames.seconds,
      frames: sorted.length,
      frameMeanMs: mean,
      frameP95Ms: sorted[Math.floor(sorted.length * 0.95)] ?? 0,
      frameMaxMs: sorted[sorted.length - 1] ?? 0,
    };
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.stdout.write(`${JSON.stringify({ ...report, failure: String(error) })}\n`);
  process.exit(1);
});
