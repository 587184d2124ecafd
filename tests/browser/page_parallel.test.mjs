// Parallel inflate in the page (issue 14; off by default): the validation worker's mode
// "parallel" decodes chunks on nested decoding workers and feeds them, in order, to one
// ParallelValidator. Whatever it does, the report must be the CLI's; whenever it cannot vouch
// for its result it must fall back to the default reader. Small chunks (4 KiB, the plan's
// minimum) force many chunks and boundary searches on the small fixtures.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { basename } from "node:path";
import { assertWasmBuilt, cliReport, codesOf, launchBrowser, listFixtures, startStaticServer } from "./helpers.mjs";

const fixtures = listFixtures();
const CHUNK = 4096;
let browser;
let server;
let page;

before(async () => {
  assertWasmBuilt();
  server = await startStaticServer();
  browser = await launchBrowser();
  page = await browser.newPage();
  await page.goto(`${server.url}/index.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/**
 * Validate each of `urls` in a fresh worker (`worker.js?simd=0` when `plain`) with mode
 * "parallel"; returns, per file, {report, stages, events}.
 */
function validateParallel(urls, { plain = false, decoders = 2 } = {}) {
  return page.evaluate(async ({ urls, plain, decoders }) => {
    const worker = new Worker(plain ? "/worker.js?simd=0" : "/worker.js", { type: "module" });
    await new Promise((ok, fail) => {
      worker.onmessage = (e) => e.data.type === "ready" && ok();
      worker.onerror = (e) => fail(new Error(e.message));
    });
    const out = [];
    try {
      for (const [id, { url, chunk }] of urls.entries()) {
        const bytes = await (await fetch(url)).arrayBuffer();
        const file = new File([bytes], url.split("/").pop());
        const events = [];
        const message = await new Promise((ok, fail) => {
          worker.onmessage = (e) => {
            if (e.data.type === "events") events.push(...e.data.events);
            if (e.data.type === "report") ok(e.data);
            if (e.data.type === "error") fail(new Error(`${url}: ${e.data.message}`));
          };
          worker.postMessage({ type: "validate", id, file, settings: null, mode: "parallel", decoders, chunkBytes: chunk });
        });
        out.push({ report: message.report, stages: message.stages, events: events.length });
      }
    } finally {
      worker.terminate();
    }
    return out;
  }, { urls, plain, decoders });
}

/**
 * A fixture's URL and chunk size: 4 KiB, but 256 KiB for the few real-model files of many MB
 * (at 4 KiB each would be ~10 000 chunks, each reading 256 KiB of overlap: gigabytes of reads,
 * which Chromium refuses for an in-memory File after a while).
 */
const url = (fixture) => ({
  url: `/fixtures/${encodeURIComponent(basename(fixture.file))}`,
  chunk: statSync(fixture.file).size > (4 << 20) ? 256 << 10 : CHUNK,
});

test("parallel mode: every fixture's report == `byom validate --format json`, and most files really ran in parallel", { skip: !fixtures && "tests/out/fixtures/expected.json is missing: generate the fixtures first (LOUDLY skipped)" }, async (t) => {
  assert.ok(fixtures.length > 0, "no fixture files found");
  const results = await validateParallel(fixtures.map(url));
  const why = new Map();
  let parallel = 0;
  let multiChunk = 0;
  const odd = [];
  for (const [i, fixture] of fixtures.entries()) {
    const cli = await cliReport(fixture.file);
    delete cli.sha256; // supplied by the CLI face (hashing thread), never by the core
    const { report, stages } = results[i];
    if (statSync(fixture.file).size > 2 * CHUNK) multiChunk += 1;
    assert.deepEqual(report, cli, `${fixture.name}: parallel-mode and CLI reports differ (stages ${JSON.stringify(stages)})`);
    if (stages.fallback === undefined) {
      assert.equal(stages.decoders, 2, `${fixture.name}: no fallback, yet not the parallel path`);
      assert.ok(stages.chunks >= 1, fixture.name);
      parallel += 1;
    } else {
      const reason = stages.fallback.replace(/\d+/g, "N");
      if (!/^(doubt|sequential): /.test(stages.fallback)) odd.push(`${fixture.name}: ${stages.fallback}`);
      why.set(reason, (why.get(reason) || 0) + 1);
    }
  }
  // A fallback is for doubts about the data; a failure of the path itself (a read, a worker)
  // is a bug here even though the default reader then gives the right report.
  assert.deepEqual(odd, [], "the parallel path itself failed");
  t.diagnostic(`${parallel} of ${fixtures.length} fixtures validated in parallel; fallbacks: ${JSON.stringify(Object.fromEntries(why))}`);
  // A path that always falls back would pass the comparison above without testing anything:
  // most fixtures of more than two chunks must have run in parallel (the rest are made to be
  // refused: trailing data, corrupt streams, bombs, not gzip at all).
  assert.ok(parallel >= multiChunk * 0.75, `only ${parallel} of the ${multiChunk} fixtures of > 2 chunks ran in parallel`);
});

test("parallel mode with the plain (non-SIMD) build and 3 decoders: same reports", { skip: !fixtures && "fixtures missing (LOUDLY skipped)" }, async () => {
  const some = fixtures.filter((_, i) => i % 5 === 0);
  const results = await validateParallel(some.map(url), { plain: true, decoders: 3 });
  let parallel = 0;
  for (const [i, fixture] of some.entries()) {
    const cli = await cliReport(fixture.file);
    delete cli.sha256;
    assert.deepEqual(results[i].report, cli, `${fixture.name} (plain build)`);
    assert.equal(results[i].stages.simd, false, `${fixture.name}: the plain build was not the one that ran`);
    if (results[i].stages.fallback === undefined) parallel += 1;
  }
  assert.ok(parallel > 0, "no fixture ran in parallel with the plain build");
});

test("parallel mode: not gzip and one chunk fall back, saying why; a corrupt stream gets the default reader's report; a zeroed region does not fall back", async () => {
  const results = await page.evaluate(async () => {
    const worker = new Worker("/worker.js", { type: "module" });
    await new Promise((ok) => { worker.onmessage = (e) => e.data.type === "ready" && ok(); });
    const run = (bytes, mode, chunkBytes) => new Promise((ok) => {
      worker.onmessage = (e) => e.data.type === "report" && ok({ report: e.data.report, fallback: e.data.stages.fallback, decoders: e.data.stages.decoders });
      worker.postMessage({ type: "validate", id: 1, file: new File([bytes], "x.tar.gz"), settings: null, mode, decoders: 2, chunkBytes });
    });
    // 300 kB that deflate cannot shrink much, gzipped by the browser, then one byte flipped
    // in the middle of the stream.
    let x = 12345;
    const noise = new Uint8Array(300_000).map(() => (x = (x * 1103515245 + 12345) >>> 0) >>> 24);
    const gz = new Uint8Array(await new Response(new Blob([noise]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
    const corrupt = gz.slice();
    corrupt[Math.floor(corrupt.length / 2)] ^= 0x55;
    const notGzip = new TextEncoder().encode("not a gzip file at all ".repeat(1000));
    // Noise, 4 MB of zeros (a zeroed layer: the chunk holding it inflates past its output
    // cap), noise: that chunk is decoded by the validation worker itself, not a fallback.
    const zeroed = new Uint8Array(await new Response(new Blob([noise, new Uint8Array(4 << 20), noise]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
    return {
      notGzip: await run(notGzip, "parallel", 4096),
      oneChunk: await run(gz, "parallel", 1 << 20),
      clean: await run(gz, "parallel", 4096),
      corrupt: await run(corrupt, "parallel", 4096),
      corruptDefault: await run(corrupt, "stream", 4096),
      zeroed: await run(zeroed, "parallel", 4096),
      zeroedDefault: await run(zeroed, "stream", 4096),
    };
  });
  assert.match(results.notGzip.fallback, /gzip header/);
  assert.equal(results.notGzip.report.valid, false);
  assert.match(results.oneChunk.fallback, /single chunk/);
  // The clean stream really ran in parallel (74 chunks) ...
  assert.equal(results.clean.fallback, undefined, `the clean stream fell back: ${results.clean.fallback}`);
  assert.equal(results.clean.decoders, 2);
  // ... and the corrupt one, whichever path took it, gets exactly the default reader's verdict.
  assert.equal(results.corrupt.report.valid, false);
  assert.deepEqual(results.corrupt.report, results.corruptDefault.report);
  assert.equal(results.zeroed.fallback, undefined, `a zeroed region sent the file back: ${results.zeroed.fallback}`);
  assert.equal(results.zeroed.decoders, 2);
  assert.deepEqual(results.zeroed.report, results.zeroedDefault.report);
});

test("the page itself with ?read=parallel: the largest fixtures (many 3 MiB chunks) get the CLI's verdict and codes", { skip: !fixtures && "fixtures missing (LOUDLY skipped)" }, async () => {
  const p = await browser.newPage();
  const errors = [];
  p.on("pageerror", (error) => errors.push(error.message));
  try {
    await p.goto(`${server.url}/?read=parallel`);
    await p.waitForSelector("body[data-ready=true]");
    const largest = [...fixtures].sort((a, b) => statSync(b.file).size - statSync(a.file).size).slice(0, 3);
    let parallel = 0;
    assert.ok(statSync(largest[0].file).size > 4 << 20, "no multi-MiB fixture to read in parallel");
    for (const fixture of largest) {
      const cli = await cliReport(fixture.file);
      const name = basename(fixture.file);
      await p.setInputFiles('[data-testid="package-input"]', fixture.file);
      const verdict = p.locator(`[data-testid="verdict"][data-valid][data-file="${name}"]`);
      await verdict.waitFor({ timeout: 120_000 });
      const rows = await p.$$eval('#issues [data-testid="issue"]', (els) => els.map((e) => ({ code: e.dataset.code, severity: e.dataset.severity })));
      assert.deepEqual({
        valid: (await verdict.getAttribute("data-valid")) === "true",
        errors: rows.filter((r) => r.severity === "error").map((r) => r.code).sort(),
        warnings: rows.filter((r) => r.severity === "warning").map((r) => r.code).sort(),
      }, { valid: cli.valid, ...codesOf(cli) }, `${fixture.name}: the page (?read=parallel) and the CLI disagree`);
      // Valid weight files: nothing to doubt, so the parallel path must be the one that answered.
      if (cli.valid) assert.equal(await verdict.getAttribute("data-reader"), "parallel", `${fixture.name}: fell back to the default reader`);
      parallel += cli.valid ? 1 : 0;
    }
    assert.ok(parallel > 0, "none of the largest fixtures is a valid package read in parallel");
    assert.deepEqual(errors, []);
  } finally {
    await p.close();
  }
});
