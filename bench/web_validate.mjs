// Browser benchmark: validation throughput of a ≥ 300 MB package in the page's own worker
// (web/worker.js + wasm) in headless Chromium, against `target/release/byom validate` on the
// same file, plus the worker's peak wasm memory and JS heap.
//
//   node bench/web_validate.mjs [PACKAGE] [--runs N]
//
// PACKAGE defaults to the largest *.tar.gz ≥ 300 MB under target/bench/ (make one with
// `.venv/bin/python bench/web_make_package.py`). Needs scripts/build-wasm.sh and
// `cargo build --release --bin byom` first, and `npm ci` in tests/browser.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { ROOT, assertWasmBuilt, launchBrowser, startStaticServer } from "../tests/browser/helpers.mjs";

const MIB = 1024 * 1024;
const args = process.argv.slice(2);
const runsAt = args.indexOf("--runs");
const RUNS = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
const positional = args.filter((a, i) => !a.startsWith("--") && (runsAt < 0 || i !== runsAt + 1));

function findPackage() {
  if (positional[0]) return positional[0];
  const dir = join(ROOT, "target/bench");
  if (!existsSync(dir)) return null;
  const candidates = readdirSync(dir)
    .filter((n) => n.endsWith(".tar.gz"))
    .map((n) => join(dir, n))
    .filter((p) => statSync(p).size >= 300e6)
    .sort((a, b) => statSync(b).size - statSync(a).size);
  return candidates[0] || null;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Native: wall time and peak RSS of one `byom validate --format json` (release build). */
function nativeRun(cli, file) {
  const started = process.hrtime.bigint();
  const result = spawnSync("/usr/bin/time", ["-f", "%M", cli, "validate", "--format", "json", file], { maxBuffer: 256 << 20 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0 && result.status !== 1) throw new Error(`byom validate failed: ${result.stderr}`);
  const lines = result.stderr.toString().trim().split("\n");
  return { ms, report: JSON.parse(result.stdout.toString()), peakRssKiB: Number(lines[lines.length - 1]) };
}

/** Renderer processes of Chromium now running (pid set), to find the one our page lives in. */
function rendererPids() {
  const pids = new Set();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
      if (cmd.includes("chromium") && cmd.includes("--type=renderer")) pids.add(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * One validation in the page: a fresh worker (the page's own worker.js) reads the File in
 * chunks. Meanwhile the renderer's RSS is sampled every 10 ms; the peak minus the RSS just
 * before (page loaded, worker started) is everything validation added — wasm memory, JS heap,
 * chunk ArrayBuffers — without the renderer's own baseline.
 */
async function browserRun(page, pids, inspector, mode, chunkBytes) {
  await page.evaluate(async () => {
    window.benchWorker = new Worker("/worker.js", { type: "module" });
    await new Promise((ok, fail) => {
      window.benchWorker.onmessage = (e) => e.data.type === "ready" && ok();
      window.benchWorker.onerror = (e) => fail(new Error(e.message));
    });
  });
  await new Promise((ok) => setTimeout(ok, 300));
  const rss = () => [...pids].reduce((sum, pid) => sum + rssBytes(pid), 0);
  const baseline = rss();
  let peak = baseline;
  const heap = { used: 0, backing: 0, samples: 0 };
  const timer = setInterval(() => { peak = Math.max(peak, rss()); }, 10);
  const heapTimer = setInterval(async () => {
    const usage = await inspector.heapUsage();
    if (!usage) return;
    heap.samples += 1;
    heap.used = Math.max(heap.used, usage.usedSize);
    heap.backing = Math.max(heap.backing, usage.backingStorageSize || 0);
  }, 20);
  const result = await page.evaluate(async ({ mode, chunkBytes }) => {
    const file = document.getElementById("bench-file").files[0];
    const worker = window.benchWorker;
    const message = await new Promise((ok, fail) => {
      worker.onmessage = (e) => {
        if (e.data.type === "report") ok(e.data);
        if (e.data.type === "error") fail(new Error(e.data.message));
      };
      worker.postMessage({ type: "validate", id: 1, file, settings: null, mode, chunkBytes });
    });
    worker.terminate();
    return { workerMs: message.elapsedMs, bytesRead: message.bytesRead, memory: message.memory, report: message.report };
  }, { mode, chunkBytes });
  clearInterval(timer);
  clearInterval(heapTimer);
  return { ...result, heap, rssBaseline: baseline, rssPeak: peak, rssAdded: peak - baseline };
}

/**
 * The worker's JS heap through the DevTools protocol (Runtime.getHeapUsage on the worker's
 * target): answered even while the worker runs its synchronous read loop. `usedSize` is the
 * JS heap; `backingStorageSize` the ArrayBuffer stores (the file chunks) outside it.
 */
async function workerInspector(page) {
  const cdp = await page.context().newCDPSession(page);
  let session = null;
  let nextId = 1;
  const waiting = new Map();
  cdp.on("Target.attachedToTarget", (e) => {
    if (e.targetInfo.type === "worker") session = e.sessionId;
  });
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    const message = JSON.parse(e.message);
    const done = waiting.get(message.id);
    if (done) {
      waiting.delete(message.id);
      done(message.result || null);
    }
  });
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  return {
    heapUsage() {
      if (!session) return Promise.resolve(null);
      const id = nextId++;
      const answer = new Promise((ok) => waiting.set(id, ok));
      cdp.send("Target.sendMessageToTarget", { sessionId: session, message: JSON.stringify({ id, method: "Runtime.getHeapUsage" }) }).catch(() => {});
      return Promise.race([answer, new Promise((ok) => setTimeout(() => ok(null), 500))]);
    },
  };
}

const MODES = [["js", 1 * MIB], ["js", 4 * MIB], ["wasm", 1 * MIB], ["stream", 1 * MIB]];

async function main() {
  assertWasmBuilt();
  const file = findPackage();
  if (!file) throw new Error("no ≥ 300 MB package: run `.venv/bin/python bench/web_make_package.py` first");
  const size = statSync(file).size;
  const cli = process.env.BYOM_CLI || join(ROOT, "target/release/byom");
  const skipNative = args.includes("--skip-native");
  if (!skipNative && !existsSync(cli)) throw new Error(`${cli} missing: cargo build --release --bin byom`);
  console.log(`package: ${file} (${(size / MIB).toFixed(1)} MiB), ${RUNS} rounds`);
  // Warm the page cache so both sides read from memory, not disk.
  execFileSync("sh", ["-c", `cat '${file}' > /dev/null`]);

  const before = rendererPids();
  const server = await startStaticServer();
  const browser = await launchBrowser();
  const native = [];
  const browserResults = Object.fromEntries(MODES.map(([m, c]) => [`${m} loop, ${c / MIB} MiB chunks`, []]));
  let nativeReport = null;
  try {
    const page = await browser.newPage();
    const inspector = await workerInspector(page);
    await page.goto(`${server.url}/index.html`);
    await page.evaluate(() => {
      const input = document.createElement("input");
      input.type = "file";
      input.id = "bench-file";
      input.hidden = true;
      document.body.append(input);
    });
    await page.setInputFiles("#bench-file", file);
    const pids = new Set([...rendererPids()].filter((pid) => !before.has(pid)));
    console.log(`chromium ${browser.version()}, renderer pids ${[...pids].join(",")}`);
    // Interleave native and browser runs: on a shared, busy host both sides then see the same
    // load, and the best of each is compared.
    for (let round = 0; round < RUNS; round++) {
      if (!skipNative) {
        const run = nativeRun(cli, file);
        native.push(run);
        nativeReport = run.report;
      }
      for (const [mode, chunk] of MODES) {
        browserResults[`${mode} loop, ${chunk / MIB} MiB chunks`].push(await browserRun(page, pids, inspector, mode, chunk));
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }

  const nativeBest = skipNative ? NaN : Math.min(...native.map((r) => r.ms));
  if (!skipNative) {
    console.log(`native byom validate: best ${nativeBest.toFixed(0)} ms, median ${median(native.map((r) => r.ms)).toFixed(0)} ms, ` +
      `${(size / MIB / (nativeBest / 1000)).toFixed(0)} MiB/s, peak RSS ${(Math.max(...native.map((r) => r.peakRssKiB)) / 1024).toFixed(1)} MiB`);
  }
  for (const [key, runs] of Object.entries(browserResults)) {
    const best = Math.min(...runs.map((r) => r.workerMs));
    const peakWasm = Math.max(...runs.map((r) => r.memory.peakWasmBytes));
    const added = Math.max(...runs.map((r) => r.rssAdded));
    const heapUsed = Math.max(...runs.map((r) => r.heap.used));
    const backing = Math.max(...runs.map((r) => r.heap.backing));
    const samples = Math.min(...runs.map((r) => r.heap.samples));
    const strip = (r) => JSON.stringify({ ...r, sha256: undefined });
    const same = nativeReport ? strip(runs[0].report) === strip(nativeReport) : "n/a";
    console.log(`${key}: best ${best.toFixed(0)} ms, median ${median(runs.map((r) => r.workerMs)).toFixed(0)} ms, ` +
      `${(size / MIB / (best / 1000)).toFixed(0)} MiB/s = ${(nativeBest / best).toFixed(2)}× native; ` +
      `peak wasm memory ${(peakWasm / MIB).toFixed(1)} MiB + worker JS heap ${(heapUsed / MIB).toFixed(1)} MiB = ${((peakWasm + heapUsed) / MIB).toFixed(1)} MiB ` +
      `(ArrayBuffer stores outside the heap, peak ${(backing / MIB).toFixed(1)} MiB; ${samples}+ heap samples/run); ` +
      `renderer RSS added by validation (peak) ${(added / MIB).toFixed(1)} MiB; ` +
      `valid=${runs[0].report.valid}; report == CLI: ${same}`);
  }
  const cpu = execFileSync("sh", ["-c", "lscpu | sed -n 's/^Model name: *//p'"]).toString().trim();
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(`host: ${cpu}, ${execFileSync("nproc").toString().trim()} cores visible, load average ${load}`);
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
