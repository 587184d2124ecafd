// Browser benchmark: validation throughput of a ≥ 300 MB package in the page's own worker
// (web/worker.js + wasm) in headless Chromium, against `target/release/byom validate` on the
// same file in the same rounds, plus the worker's peak wasm memory and JS heap. Every figure
// carries the load average it was measured under (the host may be shared).
//
//   node bench/web_validate.mjs [PACKAGE] [--runs N] [--all] [--parallel] [--floor] [--only I,J] [--profile] [--skip-native]
//
// PACKAGE defaults to the largest *.tar.gz ≥ 300 MB under target/bench/ (make one with
// `.venv/bin/python bench/web_make_package.py`). Needs scripts/build-wasm.sh and
// `cargo build --release --bin byom` first, and `npm ci` in tests/browser.
//
// Readers measured: the page's default (Blob.stream() + BYOB into one reused 1 MiB buffer) with
// the SIMD128 wasm and with the plain fallback forced (`worker.js?simd=0`), and the
// FileReaderSync loop (browsers without byte streams). `--all` adds the older variants
// (FileReaderSync 4 MiB, the loop in Rust: validateBlob, BYOB 4 MiB, BYOB with read-ahead). Each round runs native once and each
// reader once, so both sides see the same load; "per round" ratios compare runs of one round.
//
// `--floor` adds, after the rounds (as many again), the speed floor of one worker: the validator's inflater alone
// and its whole gzip layer (inflate + CRC-32 + checks) over the package already in wasm memory
// (byom-wasm's floor.rs: no reads, no copies, no tar walk), and the same two natively
// (`cargo build --release -p byom-wasm --example floor`): no read loop can beat the first.
//
// `--profile` then records one default run with Chromium's sampling profiler on the worker
// (CDP Profiler domain, 100 µs) and one native run with `perf record`, and prints both by stage
// (inflate, CRC-32, tar walk, .pt scan, copies, JS, waiting for reads). Function names in the
// wasm need `BYOM_WASM_NAMES=1 scripts/build-wasm.sh` (wasm-opt drops them otherwise).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, assertWasmBuilt, launchBrowser, startStaticServer } from "../tests/browser/helpers.mjs";

const MIB = 1024 * 1024;
const args = process.argv.slice(2);
const runsAt = args.indexOf("--runs");
const RUNS = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
const positional = args.filter((a, i) => !a.startsWith("--") && !["--runs", "--only"].includes(args[i - 1]));
const PROFILE = args.includes("--profile");
const FLOOR = args.includes("--floor");
/** How often the worker's JS heap is sampled over CDP (BENCH_HEAP_MS; every sample costs CPU in
 * node and the renderer, which a 2-core host takes from the readers being measured). */
const HEAP_SAMPLE_MS = Number(process.env.BENCH_HEAP_MS || 20);

/** The readers: label, worker read mode, chunk bytes, whether SIMD is forced off. */
const ALL_READERS = [
  { label: "stream (BYOB, 1 MiB), SIMD wasm — the page's default", mode: "stream", chunk: 1 * MIB },
  { label: "stream (BYOB, 1 MiB), plain wasm (fallback forced)", mode: "stream", chunk: 1 * MIB, noSimd: true },
  { label: "FileReaderSync (1 MiB), SIMD wasm", mode: "js", chunk: 1 * MIB },
  ...(args.includes("--all") ? [
    { label: "FileReaderSync (4 MiB), SIMD wasm", mode: "js", chunk: 4 * MIB },
    { label: "validateBlob (loop in Rust, 1 MiB), SIMD wasm", mode: "wasm", chunk: 1 * MIB },
    { label: "stream (BYOB, 4 MiB), SIMD wasm", mode: "stream", chunk: 4 * MIB },
    { label: "stream (BYOB, 1 MiB, read-ahead), SIMD wasm", mode: "stream", chunk: 1 * MIB, readAhead: true },
  ] : []),
  // `--parallel`: issue 14's parallel inflate (mode "parallel", off by default in the page) with
  // 1, 2 and 4 decoding workers, 3 MiB chunks as the page uses (PARALLEL_CHUNK_MIB=N for others).
  ...(args.includes("--parallel") ? [1, 2, 4].map((decoders) => (
    { label: `parallel inflate, ${decoders} decoding worker${decoders > 1 ? "s" : ""}, SIMD wasm`, mode: "parallel", chunk: Number(process.env.PARALLEL_CHUNK_MIB || 3) * MIB, decoders }
  )) : []),
];
// `--only 0,6`: just these readers (indices into the list above, with --all), for quick A/B runs.
const onlyAt = args.indexOf("--only");
const READERS = onlyAt >= 0 ? args[onlyAt + 1].split(",").map((i) => ALL_READERS[Number(i)]) : ALL_READERS;

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

/** The 1-minute load average now (the figure printed next to every measurement). */
function load1() {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

function loadRange(runs) {
  const values = runs.flatMap((r) => [r.loadBefore, r.loadAfter]);
  return `${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)}`;
}

/**
 * Native: wall time and peak RSS of one `byom validate --format json --inflate-threads 1`
 * (release build): the sequential reader on one core, the same code the page's one worker runs
 * (the CLI's default inflates on all cores since 2026-12-03; docs/bench-parallel-inflate.md).
 */
function nativeRun(cli, file) {
  const loadBefore = load1();
  const started = process.hrtime.bigint();
  const result = spawnSync("/usr/bin/time", ["-f", "%M", cli, "validate", "--format", "json", "--inflate-threads", "1", file], { maxBuffer: 256 << 20 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0 && result.status !== 1) throw new Error(`byom validate failed: ${result.stderr}`);
  const lines = result.stderr.toString().trim().split("\n");
  return { ms, report: JSON.parse(result.stdout.toString()), peakRssKiB: Number(lines[lines.length - 1]), loadBefore, loadAfter: load1() };
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
 * chunk ArrayBuffers — without the renderer's own baseline. With `profile`, the worker runs
 * under Chromium's sampling profiler.
 */
async function browserRun(page, pids, inspector, reader, profile = false) {
  const ready = await page.evaluate(async (noSimd) => {
    window.benchWorker = new Worker(noSimd ? "/worker.js?simd=0" : "/worker.js", { type: "module" });
    return new Promise((ok, fail) => {
      window.benchWorker.onmessage = (e) => e.data.type === "ready" && ok({ simd: e.data.simd });
      window.benchWorker.onerror = (e) => fail(new Error(e.message));
    });
  }, Boolean(reader.noSimd));
  await new Promise((ok) => setTimeout(ok, 300));
  if (profile) await inspector.startProfile();
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
  }, profile ? 1000 : HEAP_SAMPLE_MS);
  const loadBefore = load1();
  const result = await page.evaluate(async ({ mode, chunk, readAhead, decoders }) => {
    const file = document.getElementById("bench-file").files[0];
    const worker = window.benchWorker;
    const message = await new Promise((ok, fail) => {
      worker.onmessage = (e) => {
        if (e.data.type === "report") ok(e.data);
        if (e.data.type === "error") fail(new Error(e.data.message));
      };
      worker.postMessage({ type: "validate", id: 1, file, settings: null, mode, chunkBytes: chunk, readAhead, decoders });
    });
    return { workerMs: message.elapsedMs, bytesRead: message.bytesRead, memory: message.memory, report: message.report, stages: message.stages };
  }, { mode: reader.mode, chunk: reader.chunk, readAhead: reader.readAhead === true, decoders: reader.decoders });
  const loadAfter = load1();
  clearInterval(timer);
  clearInterval(heapTimer);
  const cpuProfile = profile ? await inspector.stopProfile() : null;
  await page.evaluate(() => window.benchWorker.terminate());
  if (ready.simd === Boolean(reader.noSimd)) throw new Error(`${reader.label}: the worker loaded the ${ready.simd ? "SIMD" : "plain"} build`);
  return { ...result, heap, rssBaseline: baseline, rssPeak: peak, rssAdded: peak - baseline, loadBefore, loadAfter, cpuProfile };
}

/**
 * The worker's DevTools target (Target.sendMessageToTarget on the auto-attached worker):
 * `Runtime.getHeapUsage` — answered even while the worker runs its synchronous read loop;
 * `usedSize` is the JS heap, `backingStorageSize` the ArrayBuffer stores (the file chunks) —
 * and the sampling profiler.
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
  const call = (method, params = {}, timeoutMs = 500) => {
    if (!session) return Promise.resolve(null);
    const id = nextId++;
    const answer = new Promise((ok) => waiting.set(id, ok));
    cdp.send("Target.sendMessageToTarget", { sessionId: session, message: JSON.stringify({ id, method, params }) }).catch(() => {});
    return Promise.race([answer, new Promise((ok) => setTimeout(() => ok(null), timeoutMs))]);
  };
  return {
    heapUsage: () => call("Runtime.getHeapUsage"),
    async startProfile() {
      await call("Profiler.enable", {}, 5000);
      await call("Profiler.setSamplingInterval", { interval: 100 }, 5000);
      await call("Profiler.start", {}, 5000);
    },
    async stopProfile() {
      const result = await call("Profiler.stop", {}, 60_000);
      return result && result.profile;
    },
  };
}

/** Stage of a function, from its (possibly mangled) Rust name or its script. */
function stageOf(name, url) {
  if (name.startsWith("[k] ")) return "kernel (file reads, scheduling)";
  if (/^\((idle|program)\)$/.test(name)) return "waiting (idle: reads, event loop)";
  if (name === "(garbage collector)") return "JS garbage collector";
  if (/crc32|Hasher/.test(name)) return "CRC-32";
  if (/zlib_rs|inflate|Decompress|flate2/i.test(name)) return "inflate";
  if (/memchr|memmem|torch|zip|Finder|pickle/.test(name)) return ".pt scan";
  if (/archive\d*tar|TarWalker|archive::tar/.test(name)) return "tar walk";
  if (/gzip|GzipDecoder/.test(name)) return "gzip framing";
  if (/memcpy|memmove|memset|copy_from_slice|extend_from_slice/.test(name)) return "memory copies";
  if (/sha2|sha256|Sha256|compress256/i.test(name)) return "sha256 (native: second thread)";
  // Scripts, and the Web API builtins they call (read, postMessage: no script URL, a plain name).
  if (/\.m?js$/.test(url) || (url === "" && /^[A-Za-z_$][\w$]*$/.test(name))) return "JS (worker loop, wasm-bindgen glue, reads)";
  if (/^__wbg|wasm_bindgen|dlmalloc|malloc|free/.test(name)) return "allocator, wasm-bindgen";
  return "other";
}

/** Self time per stage and the top functions of a CDP CPU profile. */
function summariseCpuProfile(profile) {
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i]) / 1000;
    self.set(profile.samples[i], (self.get(profile.samples[i]) || 0) + dt);
  }
  const fns = new Map();
  for (const [id, ms] of self) {
    const frame = byNode.get(id).callFrame;
    const name = frame.functionName || `(anonymous ${frame.url || "no script"}:${frame.lineNumber}:${frame.columnNumber})`;
    const entry = fns.get(name) || { ms: 0, url: frame.url };
    entry.ms += ms;
    fns.set(name, entry);
  }
  return groupStages([...fns].map(([name, { ms, url }]) => ({ name, ms, url })));
}

function groupStages(functions) {
  const total = functions.reduce((s, f) => s + f.ms, 0);
  const stages = new Map();
  for (const f of functions) {
    const stage = stageOf(f.name, f.url);
    stages.set(stage, (stages.get(stage) || 0) + f.ms);
  }
  const sorted = [...stages].sort((a, b) => b[1] - a[1]);
  const top = [...functions].sort((a, b) => b.ms - a.ms).slice(0, 12);
  return { total, stages: sorted, top };
}

/** Native profile: `perf record` of one `byom validate`, self time per symbol (both threads). */
function nativeProfile(cli, file) {
  const dir = mkdtempSync(join(tmpdir(), "byom-perf-"));
  try {
    const data = join(dir, "perf.data");
    const rec = spawnSync("perf", ["record", "-F", "2000", "-o", data, "--", cli, "validate", "--format", "json", "--inflate-threads", "1", file], { maxBuffer: 256 << 20 });
    if (rec.status !== 0 && rec.status !== 1) return { error: `perf record failed: ${rec.stderr}` };
    const rep = spawnSync("perf", ["report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "0.1"], { maxBuffer: 64 << 20 });
    const functions = [];
    let cpuMs = 0;
    for (const line of rep.stdout.toString().split("\n")) {
      // cpu-clock events count nanoseconds of CPU time: the total the percentages share.
      const count = /^# Event count \(approx\.\): (\d+)/.exec(line);
      if (count) cpuMs = Number(count[1]) / 1e6;
      const m = /^\s+([\d.]+)%\s+\[([.k])\]\s+(\S+)/.exec(line);
      if (m) functions.push({ name: (m[2] === "k" ? "[k] " : "") + m[3], ms: (Number(m[1]) / 100) * cpuMs });
    }
    return groupStages(functions);
  } catch (error) {
    return { error: String(error.message || error) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The browser's floor (`--floor`): a fresh module worker loads the page's wasm (SIMD build),
 * reads the whole File into wasm memory once, then times `InflateFloor.inflateOnly` and
 * `.gzipLayer` (crates/byom-wasm/src/floor.rs) with nothing else running in it.
 */
async function browserFloor(page) {
  const loadBefore = load1();
  const result = await page.evaluate(async () => {
    const src = `import { loadValidator } from "${location.origin}/wasm.js";
      onmessage = async (e) => {
        try {
          const { byom, simd } = await loadValidator();
          const floor = new byom.InflateFloor(new Uint8Array(new FileReaderSync().readAsArrayBuffer(e.data)));
          const out = { simd };
          for (const stage of ["inflateOnly", "gzipLayer"]) {
            const t = performance.now();
            const bytesOut = floor[stage]();
            out[stage] = { ms: performance.now() - t, bytesOut };
          }
          floor.free();
          postMessage(out);
        } catch (error) {
          postMessage({ error: String(error && error.message ? error.message : error) });
        }
      };`;
    const worker = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })), { type: "module" });
    const file = document.getElementById("bench-file").files[0];
    const out = await new Promise((ok) => {
      worker.onmessage = (e) => ok(e.data);
      worker.onerror = (e) => ok({ error: e.message || "the floor worker failed" });
      worker.postMessage(file);
    });
    worker.terminate();
    return out;
  });
  if (result.error) throw new Error(`floor: ${result.error}`);
  return { ...result, loadBefore, loadAfter: load1() };
}

/** The native floor (`--floor`): target/release/examples/floor, one run of each stage. */
function nativeFloor(file) {
  const bin = join(ROOT, "target/release/examples/floor");
  if (!existsSync(bin)) throw new Error(`${bin} missing: cargo build --release -p byom-wasm --example floor`);
  const loadBefore = load1();
  const lines = execFileSync(bin, [file, "1"]).toString().trim().split("\n").map((l) => JSON.parse(l));
  const out = { loadBefore, loadAfter: load1() };
  for (const l of lines) out[l.stage === "inflate_only" ? "inflateOnly" : "gzipLayer"] = { ms: l.ms, bytesOut: l.bytes_out };
  return out;
}

/**
 * The floor table: each stage's best (median) time, and what it is against the native
 * `byom validate` (the ratio a read loop would reach if that stage were all it did).
 */
function printFloor(floors, nativeBest, defaultRuns) {
  const row = (label, runs, pick) => {
    const ms = runs.map(pick);
    const best = Math.min(...ms);
    const vs = Number.isNaN(nativeBest) ? "—" : `${(nativeBest / best).toFixed(2)}×`;
    console.log(`| ${label} | ${(best / 1000).toFixed(2)} s (${(median(ms) / 1000).toFixed(2)}) | ${vs} | ${loadRange(runs)} |`);
  };
  console.log("\n## The floor: the validator's inflater with nothing else to do (package already in memory)\n");
  console.log("| stage | best (median) | native `byom validate` ÷ this | load average |\n|---|---|---|---|");
  const n = floors.map((f) => f.native);
  const b = floors.map((f) => f.browser);
  row("native: zlib-rs inflate alone", n, (r) => r.inflateOnly.ms);
  row("native: gzip layer (inflate + CRC-32 + checks)", n, (r) => r.gzipLayer.ms);
  row(`wasm (${b[0].simd ? "SIMD" : "plain"}) in a worker: zlib-rs inflate alone`, b, (r) => r.inflateOnly.ms);
  row(`wasm (${b[0].simd ? "SIMD" : "plain"}) in a worker: gzip layer (inflate + CRC-32 + checks)`, b, (r) => r.gzipLayer.ms);
  if (defaultRuns) row("the page's default reader (whole validation, from the File)", defaultRuns, (r) => r.workerMs);
}

function printProfile(title, summary) {
  if (summary.error) {
    console.log(`\n${title}: ${summary.error}`);
    return;
  }
  console.log(`\n${title} (self time, ${summary.total.toFixed(0)} ms sampled)\n`);
  console.log("| stage | ms | share |\n|---|---|---|");
  for (const [stage, ms] of summary.stages) console.log(`| ${stage} | ${ms.toFixed(0)} | ${(100 * ms / summary.total).toFixed(1)} % |`);
  console.log("\ntop functions:");
  for (const f of summary.top) console.log(`  ${f.ms.toFixed(0).padStart(6)} ms  ${stageOf(f.name, f.url).padEnd(12).slice(0, 12)}  ${f.name.slice(0, 110)}`);
}

async function main() {
  assertWasmBuilt();
  const file = findPackage();
  if (!file) throw new Error("no ≥ 300 MB package: run `.venv/bin/python bench/web_make_package.py` first");
  const size = statSync(file).size;
  const cli = process.env.BYOM_CLI || join(ROOT, "target/release/byom");
  const skipNative = args.includes("--skip-native");
  if (!skipNative && !existsSync(cli)) throw new Error(`${cli} missing: cargo build --release --bin byom`);
  const cpu = execFileSync("sh", ["-c", "lscpu | sed -n 's/^Model name: *//p'"]).toString().trim();
  console.log(`package: ${file} (${(size / MIB).toFixed(1)} MiB), ${RUNS} rounds; host: ${cpu}, ` +
    `${execFileSync("nproc").toString().trim()} cores visible, load average now ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  // Warm the page cache so both sides read from memory, not disk.
  execFileSync("sh", ["-c", `cat '${file}' > /dev/null`]);

  const before = rendererPids();
  const server = await startStaticServer();
  const browser = await launchBrowser();
  const native = [];
  const results = READERS.map(() => []);
  let nativeReport = null;
  let profiles = null;
  const floors = [];
  let chromiumVersion = "?";
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
    chromiumVersion = browser.version();
    console.log(`chromium ${chromiumVersion}, renderer pids ${[...pids].join(",")}`);
    // Interleave native and browser runs: on a shared, busy host both sides then see the same
    // load; each line says what the load was.
    for (let round = 0; round < RUNS; round++) {
      if (!skipNative) {
        const run = nativeRun(cli, file);
        native.push(run);
        nativeReport = run.report;
        console.log(`round ${round + 1}: native ${run.ms.toFixed(0)} ms (load ${run.loadBefore.toFixed(2)} → ${run.loadAfter.toFixed(2)})`);
      }
      for (const [i, reader] of READERS.entries()) {
        const run = await browserRun(page, pids, inspector, reader);
        results[i].push(run);
        const s = run.stages || {};
        console.log(`round ${round + 1}: ${reader.label}: ${run.workerMs.toFixed(0)} ms` +
          (s.fallback ? ` (FELL BACK to the default reader: ${s.fallback})` : "") +
          (s.decoders ? ` (start ${s.startMs.toFixed(0)}, waiting for decoders ${s.waitMs.toFixed(0)}, accept ${s.acceptMs.toFixed(0)}, other ${s.otherMs.toFixed(0)}, finish ${s.finishMs.toFixed(0)} ms; decoding ${s.decodeMs.toFixed(0)} ms summed over ${s.decoders} workers; ${s.chunks} chunks)`
            : s.readMs !== undefined ? ` (read ${s.readMs.toFixed(0)}, feed ${s.feedMs.toFixed(0)}, other ${s.otherMs.toFixed(0)}, finish ${s.finishMs.toFixed(0)} ms; ${s.chunks} chunks)` : "") +
          (native[round] ? ` = ${(native[round].ms / run.workerMs).toFixed(2)}× native this round` : "") +
          ` (load ${run.loadBefore.toFixed(2)} → ${run.loadAfter.toFixed(2)})`);
      }
    }
    // The floor's rounds come after the readers': its worker holds ~1.4 GiB (the file and wasm
    // memory), and freeing that slowed the native run that followed it by up to 0.4 s.
    for (let round = 0; FLOOR && round < RUNS; round++) {
      const n = nativeFloor(file);
      const b = await browserFloor(page);
      floors.push({ native: n, browser: b });
      console.log(`floor round ${round + 1}: native inflate ${n.inflateOnly.ms.toFixed(0)} ms, gzip layer ${n.gzipLayer.ms.toFixed(0)} ms (load ${n.loadBefore.toFixed(2)} → ${n.loadAfter.toFixed(2)}); ` +
        `wasm (${b.simd ? "SIMD" : "plain"}) inflate ${b.inflateOnly.ms.toFixed(0)} ms, gzip layer ${b.gzipLayer.ms.toFixed(0)} ms (load ${b.loadBefore.toFixed(2)} → ${b.loadAfter.toFixed(2)})`);
      await new Promise((ok) => setTimeout(ok, 3000));
    }
    if (PROFILE) {
      const run = await browserRun(page, pids, inspector, READERS[0], true);
      profiles = { browser: run.cpuProfile ? summariseCpuProfile(run.cpuProfile) : { error: "no profile came back" }, browserMs: run.workerMs, browserLoad: [run.loadBefore, run.loadAfter] };
    }
  } finally {
    await browser.close();
    await server.close();
  }

  const nativeBest = skipNative ? NaN : Math.min(...native.map((r) => r.ms));
  const strip = (r) => JSON.stringify({ ...r, sha256: undefined });
  console.log(`\n## Results: ${(size / MIB).toFixed(1)} MiB package, best of ${RUNS} interleaved rounds (medians in parentheses)\n`);
  console.log("Ratio = native time / browser time: of the best runs, and the median of the per-round ratios (same round, same load).\n");
  console.log("| reader | time | throughput | vs native (best) | vs native (per round, median) | worker: read / feed / other (best run) | wasm memory + worker JS heap (peak) | renderer RSS added (peak) | load average | report == CLI |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  if (!skipNative) {
    console.log(`| native \`byom validate\` (release) | ${(nativeBest / 1000).toFixed(2)} s (${(median(native.map((r) => r.ms)) / 1000).toFixed(2)}) | ` +
      `${(size / MIB / (nativeBest / 1000)).toFixed(0)} MiB/s | 1.00× | 1.00× | — | — | peak RSS ${(Math.max(...native.map((r) => r.peakRssKiB)) / 1024).toFixed(1)} MiB | ${loadRange(native)} | — |`);
  }
  for (const [i, reader] of READERS.entries()) {
    const runs = results[i];
    const bestRun = runs.reduce((a, b) => (b.workerMs < a.workerMs ? b : a));
    const best = bestRun.workerMs;
    const perRound = skipNative ? NaN : median(runs.map((r, k) => native[k].ms / r.workerMs));
    const peakWasm = Math.max(...runs.map((r) => r.memory.peakWasmBytes));
    const heapUsed = Math.max(...runs.map((r) => r.heap.used));
    const added = Math.max(...runs.map((r) => r.rssAdded));
    const s = bestRun.stages || {};
    const split = s.decoders ? `wait ${s.waitMs.toFixed(0)} / accept ${s.acceptMs.toFixed(0)} / ${(s.startMs + s.otherMs + s.finishMs).toFixed(0)} ms`
      : s.readMs !== undefined ? `${s.readMs.toFixed(0)} / ${s.feedMs.toFixed(0)} / ${(s.otherMs + s.finishMs).toFixed(0)} ms` : "—";
    const same = nativeReport ? strip(runs[0].report) === strip(nativeReport) : "n/a";
    console.log(`| ${reader.label} | ${(best / 1000).toFixed(2)} s (${(median(runs.map((r) => r.workerMs)) / 1000).toFixed(2)}) | ` +
      `${(size / MIB / (best / 1000)).toFixed(0)} MiB/s | **${(nativeBest / best).toFixed(2)}×** | ${perRound.toFixed(2)}× | ${split} | ` +
      `${(peakWasm / MIB).toFixed(1)} + ${(heapUsed / MIB).toFixed(1)} = ${((peakWasm + heapUsed) / MIB).toFixed(1)} MiB | ${(added / MIB).toFixed(1)} MiB | ${loadRange(runs)} | ${same} |`);
  }
  if (floors.length) printFloor(floors, skipNative ? NaN : nativeBest, results[0] && READERS[0].mode === "stream" && !READERS[0].noSimd ? results[0] : null);
  console.log(`\nload average at the end: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}; chromium ${chromiumVersion}`);
  if (profiles) {
    printProfile(`browser worker, default reader, ${profiles.browserMs.toFixed(0)} ms under the profiler (load ${profiles.browserLoad.map((l) => l.toFixed(2)).join(" → ")})`, profiles.browser);
    if (!skipNative) {
      const l0 = load1();
      const summary = nativeProfile(cli, file);
      printProfile(`native byom validate under perf (load ${l0.toFixed(2)} → ${load1().toFixed(2)})`, summary);
    }
  }
}

main().catch((error) => {
  console.error(error.stack || error.message);
  process.exit(1);
});
