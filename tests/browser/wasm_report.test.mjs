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
  // Both builds, loaded the way the worker loads them (web/wasm.js): the SIMD128 one chosen by
  // feature detection, and the plain fallback forced. Each module instance is independent.
  const loaded = await page.evaluate(async () => {
    const { loadValidator } = await import("/wasm.js");
    const simd = await loadValidator();
    const plain = await loadValidator({ simd: false });
    window.byom = simd.byom;
    window.builds = { simd: simd.byom, plain: plain.byom };
    return { simd: simd.simd, plain: plain.simd, same: simd.byom === plain.byom };
  });
  // Chromium has SIMD: detection must pick it, or the SIMD build would go untested.
  assert.deepEqual(loaded, { simd: true, plain: false, same: false });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/**
 * Validate a served file in the page with each build ("simd", "plain"), fed in `chunk`-byte
 * pieces, and return {build: report JSON}.
 */
function validateInPage(url, chunk) {
  return page.evaluate(async ({ url, chunk }) => {
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    const out = {};
    for (const [build, byom] of Object.entries(window.builds)) {
      const validator = new byom.Validator(undefined);
      for (let at = 0; at < bytes.length; at += chunk) {
        validator.feed(bytes.subarray(at, at + chunk));
      }
      out[build] = validator.finishJson();
    }
    return out;
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

test("every fixture, both wasm builds (SIMD128 and plain): report JSON == `byom validate --format json`", { skip: !fixtures && "tests/out/fixtures/expected.json is missing: generate the fixtures first (LOUDLY skipped)" }, async (t) => {
  assert.ok(fixtures.length > 0, "no fixture files found");
  const chunks = [4 << 20, 65_537, 1000];
  let compared = 0;
  for (const [index, fixture] of fixtures.entries()) {
    const cli = await cliReport(fixture.file);
    delete cli.sha256; // supplied by the CLI face (hashing thread), never by the core
    // Rotate chunk sizes over the fixtures: the report must not depend on them.
    const chunk = chunks[index % chunks.length];
    const reports = await validateInPage(`/fixtures/${encodeURIComponent(basename(fixture.file))}`, chunk);
    for (const [build, json] of Object.entries(reports)) {
      assert.deepEqual(JSON.parse(json), cli, `${fixture.name} (chunk ${chunk}, ${build} build): wasm and CLI reports differ`);
    }
    // Byte for byte, not only as parsed JSON: one serialiser, whichever build ran it.
    assert.equal(reports.simd, reports.plain, `${fixture.name}: the SIMD and plain builds' reports differ`);
    compared += 1;
  }
  t.diagnostic(`compared ${compared} fixtures`);
});
