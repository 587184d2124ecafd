// The page against the real byom-server: the server's format-spec drives validation; an invalid
// package is never uploaded (checked on the server's own request metrics); a valid one uploads
// with progress, compiles for x86_64-cpu, reaches `succeeded`, and its artifact downloads.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  SCREENSHOT_DIR, SERVER_BIN, assertWasmBuilt, cliReport, codesOf, launchBrowser, listFixtures, parseMetrics,
  startByomServer, tempDir,
} from "./helpers.mjs";
import { existsSync } from "node:fs";

const fixtures = listFixtures();
const skip = !existsSync(SERVER_BIN)
  ? `${SERVER_BIN} is missing: build it with \`cargo build -p byom-server\` (LOUDLY skipped)`
  : !fixtures && "tests/out/fixtures/expected.json is missing: generate the fixtures first (LOUDLY skipped)";

/** Small valid packages with a TorchScript model, in order of preference. */
const VALID_CANDIDATES = ["minimal_required_only", "gzip_level_1", "nonsquare_320x240", "ustar_format", "tar_dot_prefix"];
const INVALID_CANDIDATES = ["mochi_missing_stages", "config_width_string", "absolute_path", "two_pt_files"];

let browser;
let server;
let page;
const pageErrors = [];
const requests = [];

async function metrics() {
  // /metrics is operator-only: without the token it is a 401 and every sum would be 0 == 0.
  const response = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${server.token}` } });
  assert.equal(response.status, 200, "GET /metrics with the operator token");
  return parseMetrics(await response.text());
}

function sumMatching(m, prefix, filter = () => true) {
  return Object.entries(m).filter(([k]) => k.startsWith(prefix) && filter(k)).reduce((s, [, v]) => s + v, 0);
}

async function pick(names, wantValid) {
  for (const name of names) {
    const fixture = fixtures.find((f) => f.name === name);
    if (!fixture) continue;
    const report = await cliReport(fixture.file);
    if (report.valid === wantValid) return { ...fixture, report };
  }
  for (const fixture of fixtures) {
    if (fixture.expected.valid !== wantValid) continue;
    const report = await cliReport(fixture.file);
    if (report.valid === wantValid && (!wantValid || statSize(fixture.file) < 1 << 20)) return { ...fixture, report };
  }
  return null;
}

function statSize(file) {
  return readFileSync(file).length;
}

async function validateOnPage(file) {
  const name = file.split("/").pop();
  await page.setInputFiles('[data-testid="package-input"]', file);
  const verdict = page.locator(`[data-testid="verdict"][data-valid][data-file="${name}"]`);
  await verdict.waitFor({ timeout: 120_000 });
  const codes = await page.$$eval('#issues [data-testid="issue"]', (els) => els.map((e) => ({ code: e.dataset.code, severity: e.dataset.severity })));
  return {
    valid: (await verdict.getAttribute("data-valid")) === "true",
    errors: codes.filter((c) => c.severity === "error").map((c) => c.code).sort(),
    warnings: codes.filter((c) => c.severity === "warning").map((c) => c.code).sort(),
  };
}

before(async () => {
  if (skip) return;
  assertWasmBuilt();
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  // Each compile worker waits 1.5 s first, so the page is seen in its queued/running state
  // (live refresh) and the "compiling" screenshot shows it.
  server = await startByomServer({ BYOM_TEST_WORKER_DELAY_MS: "1500" });
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true });
  page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("request", (request) => requests.push({ method: request.method(), url: request.url() }));
  await page.goto(`${server.url}/`);
  await page.waitForSelector("body[data-ready=true]");
  await page.fill('[data-testid="token-input"]', server.token);
  // The page checks the token with the server before it enables uploads.
  await page.waitForSelector('[data-testid="token-status"][data-state="ok"]', { timeout: 10_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the page loads the server's format-spec and validates under it", { skip }, async () => {
  const status = page.locator('[data-testid="server-status"]');
  assert.equal(await status.getAttribute("class"), "pill ok");
  assert.equal(await page.isHidden("#notice"), true, "no 'no server' notice with a server");
  const spec = await (await fetch(`${server.url}/api/v1/format-spec`)).json();
  const footer = await page.textContent("#versions");
  assert.ok(footer.includes(spec.settings_hash.slice(0, 19)), `footer shows the server's settings hash: ${footer}`);
});

test("an invalid package is never uploaded", { skip }, async () => {
  const invalid = await pick(INVALID_CANDIDATES, false);
  assert.ok(invalid, "no invalid fixture found");
  const before = await metrics();
  const shown = await validateOnPage(invalid.file);
  assert.deepEqual(shown, { valid: false, ...codesOf(invalid.report) });
  assert.equal(await page.isDisabled('[data-testid="upload-button"]'), true);
  // Even a forced click on the disabled button must not send anything.
  await page.click('[data-testid="upload-button"]', { force: true });
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(SCREENSHOT_DIR, "invalid.png"), fullPage: true });
  const after = await metrics();
  const puts = (m) => sumMatching(m, "byom_http_requests_total", (k) => /method="(PUT|POST|PATCH)"/.test(k));
  assert.equal(puts(after), puts(before), "the server saw an upload request");
  assert.equal(sumMatching(after, "byom_upload_bytes_total"), sumMatching(before, "byom_upload_bytes_total"));
  assert.equal(sumMatching(after, "byom_uploads_total"), sumMatching(before, "byom_uploads_total"));
  assert.deepEqual(requests.filter((r) => ["PUT", "POST", "PATCH"].includes(r.method)), [], "the page sent a write request");
});

test("a valid package uploads, compiles for x86_64-cpu and its artifact downloads", { skip, timeout: 600_000 }, async (t) => {
  const valid = await pick(VALID_CANDIDATES, true);
  assert.ok(valid, "no valid fixture found");
  t.diagnostic(`valid package: ${valid.name}`);
  const shown = await validateOnPage(valid.file);
  assert.deepEqual(shown, { valid: true, ...codesOf(valid.report) });
  assert.equal(await page.isEnabled('[data-testid="upload-button"]'), true);
  await page.screenshot({ path: join(SCREENSHOT_DIR, "valid.png"), fullPage: true });

  const before = await metrics();
  await page.click('[data-testid="upload-button"]');
  await page.locator("#upload-result .ok").waitFor({ timeout: 120_000 });
  const progress = page.locator('[data-testid="upload-progress"]');
  assert.equal(await progress.evaluate((p) => p.value === p.max && p.max > 0), true, "upload progress reached 100 %");
  assert.equal(await page.locator('[data-testid="verdict-disagreement"]').count(), 0, "the server's verdict agrees");
  const after = await metrics();
  assert.equal(sumMatching(after, "byom_uploads_total", (k) => k.includes("accepted")) - sumMatching(before, "byom_uploads_total", (k) => k.includes("accepted")), 1);

  // Compile for x86_64-cpu only.
  for (const target of ["x86_64-cuda", "arm64-cpu", "jetson-xavier"]) await page.uncheck(`[data-testid="target-${target}"]`);
  await page.check('[data-testid="target-x86_64-cpu"]');
  await page.click('[data-testid="compile-button"]');
  const status = page.locator('[data-testid="target-status-x86_64-cpu"]');
  await status.waitFor({ timeout: 30_000 });
  const first = await status.getAttribute("data-status");
  assert.match(first, /^(queued|running)$/, "the job is shown before it finishes");
  await page.screenshot({ path: join(SCREENSHOT_DIR, "compiling.png"), fullPage: true });
  await page.waitForSelector('[data-testid="target-status-x86_64-cpu"]:is([data-status=succeeded],[data-status=failed],[data-status=cancelled])', { timeout: 540_000 });
  await page.screenshot({ path: join(SCREENSHOT_DIR, "compiled.png"), fullPage: true });
  const final = await status.getAttribute("data-status");
  const reason = await page.locator("#job .failure").allTextContents();
  assert.equal(final, "succeeded", `compile ended ${final}: ${reason.join(" ")}`);

  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: 60_000 }),
    page.click('[data-testid="artifact-link-x86_64-cpu"]'),
  ]);
  const saved = join(tempDir(), download.suggestedFilename());
  await download.saveAs(saved);
  const bytes = readFileSync(saved);
  assert.ok(bytes.length > 100, "artifact is not empty");
  assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b], "artifact is a gzip file");
  assert.match(download.suggestedFilename(), /x86_64-cpu\.tar\.gz$/);
  assert.equal(pageErrors.length, 0, pageErrors.join("\n"));
});
