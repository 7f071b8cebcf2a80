// /docs (Swagger UI) and /redoc in headless Chromium (driven by tests/docs/test_docs_browser.py).
// argv[2]: JSON config {baseUrl, host, apiKey, jobId, artifacts}. `host` is a made-up name that
// Chromium resolves to the server (--host-resolver-rules), so the pages run as they would on a
// real deployment (Swagger UI skips some outside calls, such as its validator badge, for
// localhost only). Prints one JSON report as its last line.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { chromium } = require("playwright-core");

const config = JSON.parse(process.argv[2]);
const base = new URL(config.baseUrl);
const served = new URL(config.baseUrl);
served.hostname = config.host;
const site = served.origin;
fs.mkdirSync(config.artifacts, { recursive: true });

const report = {
  requests: [],
  offHost: [],
  askedOffHost: [],
  pageErrors: [],
  refusedByCsp: [],
  console: [],
  spec: [],
  swagger: { operations: [] },
  redoc: { operations: [] },
  tryItOut: null,
  screenshots: [],
};

function log(...args) {
  process.stderr.write(`[docs] ${args.join(" ")}\n`);
}

async function newPage(browser, label) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  // Every request that reaches the network layer passes here: one for another host would
  // leave the machine, so it is recorded (offHost) and refused.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === "data:" || url.protocol === "blob:" || url.hostname === config.host) {
      return route.continue();
    }
    report.offHost.push(`${label}: ${url.href}`);
    return route.abort("blockedbyclient");
  });
  const page = await context.newPage();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol === "data:" || url.protocol === "blob:") return;
    report.requests.push(`${label}: ${request.method()} ${url.href}`);
    if (url.hostname !== config.host) report.askedOffHost.push(`${label}: ${url.href}`);
  });
  // what the page's Content-Security-Policy stopped inside the browser, before any network
  page.on("requestfailed", (request) => {
    if (request.failure().errorText === "csp") report.refusedByCsp.push(`${label}: ${request.url()}`);
  });
  page.on("websocket", (socket) => report.offHost.push(`${label}: websocket ${socket.url()}`));
  page.on("pageerror", (error) => report.pageErrors.push(`${label}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "warning" || message.type() === "error") {
      report.console.push(`${label}: ${message.type()}: ${message.text().slice(0, 300)}`);
    }
  });
  return page;
}

async function shot(page, name, options = {}) {
  const file = path.join(config.artifacts, `${name}.png`);
  await page.screenshot({ path: file, ...options });
  report.screenshots.push(file);
}

async function swagger(browser) {
  const page = await newPage(browser, "docs");
  await page.goto(`${site}/docs`);
  await page.waitForSelector(".opblock", { timeout: 60000 });
  report.swagger.operations = await page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method");
      const route = block.querySelector(".opblock-summary-path");
      return `${method.textContent.trim()} ${route.getAttribute("data-path")}`;
    }),
  );
  await shot(page, "docs");

  // Authorize with the API key (the APIKeyHeader scheme, header X-API-Key), then close
  await page.click(".auth-wrapper .btn.authorize");
  const dialog = page.locator(".modal-ux");
  const scheme = dialog.locator(".auth-container").filter({ hasText: "APIKeyHeader" });
  await scheme.locator("input").fill(config.apiKey);
  await scheme.locator("button.authorize").click();
  await scheme.locator("h6", { hasText: "Authorized" }).waitFor();
  await scheme.locator("button.btn-done").click();
  await dialog.waitFor({ state: "detached" });

  // "Try it out" on list-jobs, Execute: the UI shows the server's answer
  const block = page.locator("#operations-Training-list_training_jobs");
  await block.locator(".opblock-summary").click();
  await block.locator("button.try-out__btn").click();
  const answered = page.waitForResponse(
    (response) => new URL(response.url()).pathname === "/v1/jobs/training",
  );
  await block.locator("button.execute").click();
  const response = await answered;
  const shown = block.locator(".live-responses-table .response .response-col_status");
  await shown.first().waitFor();
  const body = await block.locator(".live-responses-table .response-col_description pre").first();
  report.tryItOut = {
    status: response.status(),
    sentKey: (await response.request().headerValue("x-api-key")) === config.apiKey,
    shownStatus: (await shown.first().textContent()).trim(),
    shownBody: (await body.textContent()).trim(),
  };
  await block.scrollIntoViewIfNeeded();
  await shot(page, "docs-try-it-out", { fullPage: false });
  await page.context().close();
}

async function redoc(browser) {
  const page = await newPage(browser, "redoc");
  await page.goto(`${site}/redoc`);
  await page.waitForSelector("[data-section-id*='operation/']", { timeout: 60000 });
  // one section per operation, `tag/<tag>/operation/<operationId>` (ids repeat inside it)
  const ids = await page.$$eval("[data-section-id*='operation/']", (sections) =>
    sections.map((section) => section.getAttribute("data-section-id")),
  );
  report.redoc.sections = ids.length;
  report.redoc.operations = [...new Set(ids)]
    .map((id) => /^tag\/[^/]+\/operation\/([^/]+)$/.exec(id))
    .filter(Boolean)
    .map((found) => found[1]);
  await shot(page, "redoc");
  await page.context().close();
}

async function main() {
  const spec = await (await fetch(`${base.origin}/openapi.json`)).json();
  for (const [route, item] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (operation && operation.operationId) {
        report.spec.push({ method: method.toUpperCase(), route, id: operation.operationId });
      }
    }
  }
  const args = (process.env.CHROMIUM_ARGS || "").split(" ").filter(Boolean);
  args.push(`--host-resolver-rules=MAP ${config.host} ${base.hostname}`);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args });
  try {
    log("swagger ui");
    await swagger(browser);
    log("redoc");
    await redoc(browser);
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.stdout.write(`${JSON.stringify(report)}\n`),
  (error) => {
    report.error = String(error && error.stack ? error.stack : error);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exitCode = 1;
  },
);
