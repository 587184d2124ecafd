// "Build a package from a bare .pt" in the page: inspect, describe, pack with the core's own
// code in wasm, then the built package is valid both in the page and for `byom validate`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CLI, FIXTURES_DIR, SCREENSHOT_DIR, assertWasmBuilt, cliReport, launchBrowser, startStaticServer, tempDir,
} from "./helpers.mjs";

/** A bare .pt taken out of a generated fixture (a resnet18 state dict: a known architecture). */
function extractPt(fixture) {
  const archive = join(FIXTURES_DIR, `${fixture}.tar.gz`);
  if (!existsSync(archive)) return null;
  const dir = tempDir("byom-pt-");
  execFileSync("tar", ["xzf", archive, "-C", dir]);
  const ptDir = join(dir, "export_artifacts");
  const pt = existsSync(ptDir) && readdirSync(ptDir).find((n) => n.endsWith(".pt"));
  return pt ? join(ptDir, pt) : null;
}

const pt = extractPt("guide_resnet_sagemaker");
const skip = !pt && "tests/out/fixtures/guide_resnet_sagemaker.tar.gz is missing: generate the fixtures first (LOUDLY skipped)";

let browser;
let server;
let page;
const pageErrors = [];

before(async () => {
  if (skip) return;
  assertWasmBuilt();
  server = await startStaticServer();
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true });
  page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(`${server.url}/`);
  await page.waitForSelector("body[data-ready=true]");
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test("a bare state dict is inspected, packed in the browser, and the package is valid", { skip, timeout: 180_000 }, async () => {
  await page.click('[data-testid="tab-build"]');
  await page.setInputFiles('[data-testid="pt-input"]', pt);
  const verdict = page.locator('[data-testid="pt-verdict"]');
  await verdict.waitFor({ timeout: 60_000 });
  assert.equal(await verdict.getAttribute("data-valid"), "true");
  const inspection = await page.textContent("#pt-result");
  assert.match(inspection, /resnet18/, "the architecture is recognised");
  assert.match(inspection, /state dict/);

  await page.fill('[data-testid="pack-classes"]', "good\ndefect");
  await page.click('[data-testid="pack-button"]');
  const link = page.locator('[data-testid="pack-download"]');
  await link.waitFor({ timeout: 120_000 });
  await page.screenshot({ path: join(SCREENSHOT_DIR, "build-from-pt.png"), fullPage: true });

  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const saved = join(tempDir(), "model.tar.gz");
  await download.saveAs(saved);
  const cli = await cliReport(saved);
  assert.equal(cli.valid, true, `byom validate on the built package: ${JSON.stringify(cli.errors)}`);
  assert.deepEqual(cli.summary.class_names, ["good", "defect"]);

  // "Validate & upload it" hands the built file to the validation flow.
  await page.click('[data-testid="pack-validate"]');
  const pageVerdict = page.locator('[data-testid="verdict"][data-valid][data-file="model.tar.gz"]');
  await pageVerdict.waitFor({ timeout: 120_000 });
  assert.equal(await pageVerdict.getAttribute("data-valid"), "true");
  const codes = await page.$$eval('#issues [data-testid="issue"]', (els) => els.map((e) => e.dataset.code).sort());
  assert.deepEqual(codes, [...cli.errors, ...cli.warnings].map((i) => i.code).sort());
  assert.equal(pageErrors.length, 0, pageErrors.join("\n"));
});

/** The three metadata files of a package, as text. */
function metadataOf(archive) {
  const dir = tempDir("byom-meta-");
  execFileSync("tar", ["xzf", archive, "-C", dir]);
  return Object.fromEntries(["config.yaml", "mochi.json", "export_artifacts/manifest.json"]
    .map((name) => [name, readFileSync(join(dir, name), "utf8")]));
}

test("a non-square package built in the page has the same metadata as `byom pack`", { skip, timeout: 180_000 }, async () => {
  await page.click('[data-testid="tab-build"]');
  await page.setInputFiles('[data-testid="pt-input"]', pt);
  await page.locator('[data-testid="pt-verdict"][data-valid="true"]').waitFor({ timeout: 60_000 });
  // The post-processing choices come from the core through wasm (no copy in the page).
  const choices = await page.$$eval('[data-testid="pack-postprocessing"] option', (els) => els.map((e) => e.value));
  assert.deepEqual(choices, ["", "softmax", "argmax", "yolo_nms", "anomaly_score", "argmax_per_pixel"]);
  await page.fill('[data-testid="pack-height"]', "256");
  await page.fill('[data-testid="pack-width"]', "320");
  await page.fill('[data-testid="pack-classes"]', "good\ndefect");
  await page.click('[data-testid="pack-button"]');
  const link = page.locator('[data-testid="pack-download"]');
  await link.waitFor({ timeout: 120_000 });
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const built = join(tempDir(), "page.tar.gz");
  await download.saveAs(built);

  // The same declaration on the command line: resize is H,W there, {height, width} in the page;
  // and without --resize the CLI defaults to the input size (once written [width, height]).
  const fromPage = metadataOf(built);
  for (const resize of [["--resize", "256,320"], []]) {
    const cliBuilt = join(tempDir(), "cli.tar.gz");
    execFileSync(CLI, ["pack", pt, "--input", "1,3,256,320", "--classes", "good,defect", ...resize,
      "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--channel-order", "RGB",
      "--postprocessing", "softmax", "-o", cliBuilt]);
    assert.deepEqual(fromPage, metadataOf(cliBuilt), `byom pack ${resize.join(" ")}`);
  }
  const manifest = JSON.parse(fromPage["export_artifacts/manifest.json"]);
  assert.deepEqual(manifest.preprocessing.resize, [256, 320], "[height, width]");
  assert.match(fromPage["config.yaml"], /image_width: 320\n  image_height: 256\n/);
  const cli = await cliReport(built);
  assert.equal(cli.valid, true, JSON.stringify(cli.errors));
  assert.ok(!cli.warnings.some((w) => w.code === "BYOM509"), JSON.stringify(cli.warnings));
});

test("a file that is not a model is refused with a reason, and cannot be packed", { skip }, async () => {
  const junk = join(tempDir(), "junk.pt");
  writeFileSync(junk, Buffer.from("this is not a pytorch file at all\n".repeat(100)));
  await page.click('[data-testid="tab-build"]');
  await page.setInputFiles('[data-testid="pt-input"]', junk);
  const verdict = page.locator('[data-testid="pt-verdict"][data-valid="false"]');
  await verdict.waitFor({ timeout: 30_000 });
  const codes = await page.$$eval('#pt-result [data-testid="issue"]', (els) => els.map((e) => e.dataset.code));
  assert.ok(codes.includes("BYOM600") || codes.includes("BYOM604"), `codes: ${codes}`);
  assert.equal(await page.isDisabled('[data-testid="pack-button"]'), true);
});
