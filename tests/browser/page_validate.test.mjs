// The page without a server (static files only): it says so, validates with the default
// settings in the worker, and shows for every fixture the verdict and the issue codes that
// `byom validate --format json` gives. Upload stays impossible.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  SCREENSHOT_DIR, assertWasmBuilt, cliReport, codesOf, launchBrowser, listFixtures, startStaticServer,
} from "./helpers.mjs";

const fixtures = listFixtures();
let browser;
let server;
let page;
const pageErrors = [];
const consoleLines = [];

before(async () => {
  assertWasmBuilt();
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  server = await startStaticServer();
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => consoleLines.push(message.text()));
  page.on("worker", (worker) => worker.on("close", () => consoleLines.push("worker closed")));
  await page.goto(`${server.url}/`);
  await page.waitForSelector("body[data-ready=true]");
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Drop a file on the page's input and wait for its verdict. */
export async function validateOnPage(p, file, name) {
  await p.setInputFiles('[data-testid="package-input"]', file);
  const verdict = p.locator(`[data-testid="verdict"][data-valid][data-file="${name}"]`);
  await verdict.waitFor({ timeout: 120_000 }).catch(async (error) => {
    const state = await p.evaluate(() => ({
      progress: document.getElementById("validate-progress-text").textContent,
      file: document.getElementById("validate-file").textContent,
      verdict: document.getElementById("verdict").outerHTML.slice(0, 300),
      issues: document.getElementById("issues").textContent.slice(0, 300),
    }));
    throw new Error(`${error.message}\npage state: ${JSON.stringify(state)}\nconsole: ${consoleLines.slice(-10).join("\n")}`);
  });
  const valid = (await verdict.getAttribute("data-valid")) === "true";
  const rows = await p.$$eval('#issues [data-testid="issue"]', (els) => els.map((e) => ({ code: e.dataset.code, severity: e.dataset.severity })));
  return {
    valid,
    errors: rows.filter((r) => r.severity === "error").map((r) => r.code).sort(),
    warnings: rows.filter((r) => r.severity === "warning").map((r) => r.code).sort(),
  };
}

test("the worker runs the SIMD128 build where the browser has SIMD", async () => {
  assert.equal(await page.getAttribute("body", "data-wasm"), "simd");
});

test("?simd=0 forces the plain wasm build, and the page still gives the CLI's verdicts", { skip: !fixtures && "no fixtures" }, async (t) => {
  const plain = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  const errors = [];
  plain.on("pageerror", (error) => errors.push(error.message));
  try {
    await plain.goto(`${server.url}/?simd=0`);
    await plain.waitForSelector("body[data-ready=true]");
    assert.equal(await plain.getAttribute("body", "data-wasm"), "plain");
    // A spread of fixtures (every eighth, and the largest): wasm_report.test.mjs compares
    // every fixture's full report with both builds; this covers the worker's path.
    const largest = [...fixtures].sort((a, b) => b.expected.size - a.expected.size)[0];
    const some = [...new Set([...fixtures.filter((_, i) => i % 8 === 0), largest])];
    for (const fixture of some) {
      const cli = await cliReport(fixture.file);
      const name = fixture.file.split("/").pop();
      const shown = await validateOnPage(plain, fixture.file, name);
      assert.deepEqual(shown, { valid: cli.valid, ...codesOf(cli) }, `${fixture.name}: page (plain wasm) and CLI disagree`);
    }
    t.diagnostic(`compared ${some.length} fixtures with the plain build`);
    assert.equal(errors.length, 0, errors.join("\n"));
  } finally {
    await plain.close();
  }
});

test("without a server the page says so and validates with default settings", async () => {
  const notice = page.locator("#notice");
  await notice.waitFor();
  assert.match(await notice.textContent(), /default settings/);
  assert.equal(await page.getAttribute('[data-testid="server-status"]', "class"), "pill bad");
  assert.equal(pageErrors.length, 0, pageErrors.join("\n"));
});

test("every fixture: the page's verdict and codes == `byom validate --format json`", { skip: !fixtures && "tests/out/fixtures/expected.json is missing: generate the fixtures first (LOUDLY skipped)" }, async (t) => {
  assert.ok(fixtures.length > 0, "no fixture files found");
  let compared = 0;
  let withForward = 0;
  let shotValid = false;
  let shotInvalid = false;
  for (const fixture of fixtures) {
    const cli = await cliReport(fixture.file);
    const name = fixture.file.split("/").pop();
    const shown = await validateOnPage(page, fixture.file, name);
    assert.deepEqual(shown, { valid: cli.valid, ...codesOf(cli) }, `${fixture.name}: page and CLI disagree`);
    // TorchScript: the report view shows the root forward with the server's verdict on it
    // (BYOM631) and the operators by namespace (BYOM630), as the CLI's report has them.
    if (cli.model && cli.model.forward) {
      const forward = page.locator('#model [data-testid="forward"]');
      assert.match(await forward.textContent(), new RegExp(`^forward\\(${cli.model.forward.params[0]?.name ?? ""}`), fixture.name);
      const refused = [...cli.errors, ...cli.warnings].some((i) => i.code === "BYOM631");
      assert.equal(await forward.getAttribute("data-verdict"), refused ? "refused" : "ok", fixture.name);
      withForward += 1;
    }
    if (cli.model && cli.model.operators && cli.model.operators.length) {
      const shownNs = await page.$$eval('#model [data-testid="operators"] [data-namespace]', (els) => els.map((e) => e.dataset.namespace).sort());
      const cliNs = [...new Set(cli.model.operators.map((o) => o.split("::")[0]))].sort();
      assert.deepEqual(shownNs, cliNs, `${fixture.name}: operator namespaces`);
    }
    // Upload is never possible here: no server, and never for an invalid package.
    assert.equal(await page.isDisabled('[data-testid="upload-button"]'), true, `${fixture.name}: upload enabled`);
    compared += 1;
    if (cli.valid && !shotValid && cli.model && cli.warnings.length === 0) {
      await page.screenshot({ path: join(SCREENSHOT_DIR, "static-valid.png"), fullPage: true });
      shotValid = true;
    }
    if (!cli.valid && !shotInvalid && cli.errors.length >= 2) {
      await page.screenshot({ path: join(SCREENSHOT_DIR, "static-invalid.png"), fullPage: true });
      shotInvalid = true;
    }
  }
  t.diagnostic(`compared ${compared} fixtures in the page (${withForward} with a TorchScript forward)`);
  assert.ok(withForward > 0, "no TorchScript fixture showed its forward");
  assert.equal(pageErrors.length, 0, pageErrors.join("\n"));
});

test("what the server cannot run is an error badge: an operator it lacks (BYOM630), a forward that takes no tensor (BYOM631)", { skip: !fixtures && "no fixtures" }, async () => {
  const cases = [
    { name: "pt_custom_operator", code: "BYOM630", testid: "operators", badge: '[data-namespace="byomfixture"].badge.bad', says: "byomfixture::scale" },
    { name: "pt_forward_takes_a_list", code: "BYOM631", testid: "forward", badge: ".badge.bad", says: "List[Tensor]" },
  ];
  for (const c of cases) {
    const fixture = fixtures.find((f) => f.name === c.name);
    assert.ok(fixture, `fixture ${c.name} is missing: regenerate the fixtures`);
    const cli = await cliReport(fixture.file);
    const name = fixture.file.split("/").pop();
    const shown = await validateOnPage(page, fixture.file, name);
    assert.deepEqual(shown, { valid: cli.valid, ...codesOf(cli) }, `${c.name}: page and CLI disagree`);
    assert.equal(shown.valid, false, c.name);
    assert.ok(shown.errors.includes(c.code), `${c.name}: ${JSON.stringify(shown)}`);
    const issue = page.locator(`#issues [data-testid="issue"][data-code="${c.code}"][data-severity="error"]`);
    assert.equal(await issue.count(), 1, c.name);
    assert.ok((await issue.textContent()).includes(c.says), `${c.name}: ${await issue.textContent()}`);
    const view = page.locator(`#model [data-testid="${c.testid}"]`);
    assert.equal(await view.getAttribute("data-verdict"), "refused", c.name);
    assert.equal(await view.locator(c.badge).count(), 1, `${c.name}: no error badge`);
    assert.equal(await page.isDisabled('[data-testid="upload-button"]'), true, `${c.name}: upload enabled`);
  }
  assert.equal(pageErrors.length, 0, pageErrors.join("\n"));
});

test("cancel stops a running validation and the page stays usable", { skip: !fixtures && "no fixtures" }, async () => {
  const big = [...fixtures].sort((a, b) => b.expected.size - a.expected.size)[0];
  await page.setInputFiles('[data-testid="package-input"]', big.file);
  await page.click("#validate-cancel").catch(() => {});
  // Whether the cancel or the verdict came first, the next file validates normally.
  const small = fixtures.find((f) => f.name === "absolute_path") || fixtures[0];
  const name = small.file.split("/").pop();
  const shown = await validateOnPage(page, small.file, name);
  const cli = await cliReport(small.file);
  assert.equal(shown.valid, cli.valid);
});
