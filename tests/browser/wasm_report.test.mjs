// The wasm validator in real Chromium produces the very same report JSON as the CLI, for every
// fixture, whatever the chunk size: one serde type, one verdict, in both faces.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { basename } from "node:path";
import { assertWasmBuilt, cliReport, launchBrowser, listFixtures, startStaticServer } from "./helpers.mjs";

const fixtures = listFixtures();
let browser;
let server;
let page;

before(async () => {
  assertWasmBuilt();
  server = await startStaticServer();
  browser = await launchBrowser();
  page = await browser.newPage();
  await page.goto(`${server.url}/index.html`);
  await page.evaluate(async () => {
    const byom = await import("/pkg/byom_wasm.js");
    await byom.default();
    window.byom = byom;
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Validate a served file in the page, fed in `chunk`-byte pieces, and return the report JSON. */
function validateInPage(url, chunk) {
  return page.evaluate(async ({ url, chunk }) => {
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    const validator = new window.byom.Validator(undefined);
    for (let at = 0; at < bytes.length; at += chunk) {
      validator.feed(bytes.subarray(at, at + chunk));
    }
    return validator.finishJson();
  }, { url, chunk });
}

test("version and default settings are exposed", async () => {
  const info = await page.evaluate(() => ({
    version: window.byom.version(),
    settings: window.byom.defaultSettings(),
    hash: window.byom.settingsHash(undefined),
  }));
  assert.match(info.version, /^\d+\.\d+\.\d+/);
  assert.equal(typeof info.settings.required_torch, "string");
  assert.equal(typeof info.settings.limits.max_uncompressed_bytes, "number");
  assert.match(info.hash, /^sha256:[0-9a-f]{64}$/);
});

test("unknown settings fields are refused, not half-applied", async () => {
  const message = await page.evaluate(() => {
    try {
      new window.byom.Validator(JSON.stringify({ limits: {}, required_torch: "2.11", surprise: 1 }));
      return null;
    } catch (error) {
      return String(error.message || error);
    }
  });
  assert.ok(message && /settings/.test(message), `expected a settings error, got ${message}`);
});

test("typed contracts: required_torch, resize and post-processing are refused when malformed", async () => {
  const result = await page.evaluate(() => {
    const { byom } = window;
    const error = (f) => {
      try {
        f();
        return null;
      } catch (e) {
        return String(e.message || e);
      }
    };
    return {
      torch: error(() => byom.settingsHash(JSON.stringify({ required_torch: "banana" }))),
      // An array resize was the ambiguous order; only {height, width} is taken.
      resize: error(() => byom.pack(new Uint8Array(0), "m.pt", JSON.stringify({ resize: [256, 320] }))),
      post: error(() => byom.pack(new Uint8Array(0), "m.pt", JSON.stringify({ postprocessing: "sigmoid" }))),
      types: byom.postProcessingTypes(),
      defaults: ["classification", "object_detection", "semantic_segmentation", "anomaly_detection", "other"]
        .map((t) => byom.defaultPostProcessing(t)),
    };
  });
  assert.match(result.torch, /"banana" is not a torch version: expected major\.minor/);
  assert.match(result.resize, /expected an object \{"height": H, "width": W\}/);
  assert.match(result.post, /unknown post-processing "sigmoid"/);
  assert.deepEqual(result.types, ["softmax", "argmax", "yolo_nms", "anomaly_score", "argmax_per_pixel"]);
  assert.deepEqual(result.defaults, ["softmax", "yolo_nms", "argmax_per_pixel", "anomaly_score", "softmax"]);
});

test("every fixture: wasm report JSON == `byom validate --format json`", { skip: !fixtures && "tests/out/fixtures/expected.json is missing: generate the fixtures first (LOUDLY skipped)" }, async (t) => {
  assert.ok(fixtures.length > 0, "no fixture files found");
  const chunks = [4 << 20, 65_537, 1000];
  let compared = 0;
  for (const [index, fixture] of fixtures.entries()) {
    const cli = await cliReport(fixture.file);
    delete cli.sha256; // supplied by the CLI face (hashing thread), never by the core
    // Rotate chunk sizes over the fixtures: the report must not depend on them.
    const chunk = chunks[index % chunks.length];
    const wasm = JSON.parse(await validateInPage(`/fixtures/${encodeURIComponent(basename(fixture.file))}`, chunk));
    assert.deepEqual(wasm, cli, `${fixture.name} (chunk ${chunk}): wasm and CLI reports differ`);
    compared += 1;
  }
  t.diagnostic(`compared ${compared} fixtures`);
});
