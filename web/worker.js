// The validation worker: runs the wasm validator off the main thread so the page never freezes.
//
// It fetches nothing from the server itself (the page hands it the settings); it only loads its
// own wasm module. Files stream through in fixed-size chunks and are never held in memory whole:
// by default through Blob.stream() with a BYOB reader into one reused buffer; where byte streams
// are missing, with FileReaderSync over Blob.slice (worker-only; each chunk is a fresh
// ArrayBuffer that V8 frees only at its next GC: 100–160 MiB of dead chunks measured). `mode`
// picks a loop explicitly: "stream", "js" (FileReaderSync in JS) or "wasm" (the same loop in
// Rust: byom.validateBlob). See docs/bench-web.md.
//
// The wasm is the SIMD128 build where supported, else the plain one (web/wasm.js); `worker.js?simd=0`
// forces the plain one (the page passes its own `?simd=0` on; the tests run both builds).
//
// Mode "parallel" (issue 14; off by default, see docs/bench-parallel-inflate.md) inflates the file on
// `decoders` nested workers (web/decode-worker.js) and feeds the results, in order, to one
// ParallelValidator; any doubt, and any failure of that path, validates the file again with
// the default reader, so the verdict never depends on it.
//
// Messages in:  {type: "validate", id, file, settings, chunkBytes?, mode?: "stream"|"js"|"wasm"|"parallel", readAhead?, decoders?}
//               {type: "inspect", id, file, settings}
//               {type: "pack", id, file, options}
// Messages out: {type: "ready", version, defaultSettings, postProcessingTypes, simd}
//               {type: "progress", id, read, total}
//               {type: "events", id, events}
//               {type: "report", id, report, elapsedMs, bytesRead, memory, stages}
//               {type: "inspection", id, result}
//               {type: "packed", id, packed: {package: Uint8Array, inferred, warnings, …}}
//               {type: "error", id, message}
import { loadValidator } from "./wasm.js";

/** The wasm module's exports (set once loaded) and whether it is the SIMD128 build. */
let byom = null;
let simd = false;

/** 1 MiB: per-chunk overhead is already negligible; bigger chunks only raise peak memory
 * (measured in docs/bench-web.md: 1 MiB was as fast as 4 MiB or faster). */
const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** 3 MiB per chunk on the parallel path: each chunk costs a Blob read through the browser
 * process, a boundary search and two messages, so fewer chunks decode faster (2 decoders on 2
 * cores: 4.1–4.3 s at 1 MiB, 2.9–3.3 s at 3 MiB; docs/bench-parallel-inflate.md), and since the
 * marker phase is capped three chunks of 3 MiB fit the core's memory budget. */
const PARALLEL_CHUNK_BYTES = 3 * 1024 * 1024;

/** Whether Blob.stream() is a byte stream (BYOB reads into one reused buffer). */
function byobSupported() {
  try {
    const reader = new Blob([]).stream().getReader({ mode: "byob" });
    reader.releaseLock();
    return true;
  } catch {
    return false;
  }
}

/**
 * The default read loop: the BYOB stream where supported (1.08× native and ~5 MiB added memory
 * on a 455 MiB package, against 0.54–0.69× and 100–160 MiB of dead chunks for FileReaderSync;
 * docs/bench-web.md), else FileReaderSync over Blob.slice.
 */
const DEFAULT_MODE = byobSupported() ? "stream" : "js";

let memory = null;
let peakWasmBytes = 0;
let peakHeapBytes = 0;

function sampleMemory() {
  if (memory) peakWasmBytes = Math.max(peakWasmBytes, memory.buffer.byteLength);
  // performance.memory is Chromium-only; it is absent elsewhere and then simply not reported.
  const heap = self.performance && self.performance.memory;
  if (heap) peakHeapBytes = Math.max(peakHeapBytes, heap.usedJSHeapSize);
}

function memoryStats() {
  sampleMemory();
  return { peakWasmBytes, peakHeapBytes: peakHeapBytes || null };
}

/** Progress messages at most every PROGRESS_MS (and for the last byte): one per 1 MiB chunk
 * cost ~3 % of the worker's time in the profile (docs/bench-web.md), and a bar needs no more. */
const PROGRESS_MS = 50;
let lastProgress = 0;

function progress(id, read, total) {
  const now = performance.now();
  if (read < total && now - lastProgress < PROGRESS_MS) return;
  lastProgress = now;
  self.postMessage({ type: "progress", id, read, total });
}

/**
 * Where a validation's wall time goes, as the worker sees it (docs/bench-web.md): waiting for
 * the file's bytes (readMs), `validator.feed` — the copy into wasm memory, then inflate, CRC-32,
 * tar walk and .pt scan (feedMs) — events, progress and memory sampling (otherMs), the final
 * report (finishMs). Four performance.now() calls per chunk: nothing next to a chunk's work.
 */
function newStages() {
  return {
    readMs: 0, feedMs: 0, otherMs: 0, finishMs: 0, chunks: 0, simd,
    /** Add the time since `since` to `key`; returns now. */
    lap(key, since) {
      const now = performance.now();
      this[key] += now - since;
      return now;
    },
  };
}

/**
 * The JS read loop: progress and events after every chunk. It reads to the end even after a
 * fatal error (isFinished): the report's compressed_bytes counts the bytes fed, and must equal
 * the CLI's and the server's, which read everything. Those bytes are only counted, not inflated.
 */
function validateInJs(id, file, settings, chunkBytes) {
  const validator = new byom.Validator(settings ?? undefined);
  const reader = new FileReaderSync();
  const total = file.size;
  const stages = newStages();
  let offset = 0;
  try {
    while (offset < total) {
      const end = Math.min(offset + chunkBytes, total);
      let t = performance.now();
      const chunk = new Uint8Array(reader.readAsArrayBuffer(file.slice(offset, end)));
      t = stages.lap("readMs", t);
      validator.feed(chunk);
      t = stages.lap("feedMs", t);
      offset = end;
      const events = validator.drainEvents();
      if (events.length) self.postMessage({ type: "events", id, events });
      progress(id, offset, total);
      sampleMemory();
      stages.lap("otherMs", t);
      stages.chunks += 1;
    }
    const events = validator.drainEvents();
    if (events.length) self.postMessage({ type: "events", id, events });
    const t = performance.now();
    const report = validator.finish();
    stages.lap("finishMs", t);
    return { report, bytesRead: offset, stages };
  } finally {
    validator.free();
  }
}

/**
 * The read loop over Blob.stream() with a BYOB reader: reads fill two buffers in turn
 * (transferred back and forth, never reallocated), so no dead chunks pile up between GCs. With
 * `readAhead` the next read is asked for before the current chunk is fed, so the browser process
 * could fetch the next bytes while the wasm inflates these; off by default: at load ~20 it
 * showed no gain and added ~25 MiB of renderer RSS (docs/bench-web.md), to re-measure quiet.
 */
async function validateStream(id, file, settings, chunkBytes, readAhead = false) {
  const validator = new byom.Validator(settings ?? undefined);
  const stream = file.stream();
  const reader = stream.getReader({ mode: "byob" });
  // Keep the stream (and its file) reachable from a global while reading: in Chromium 156 a GC
  // that collects a Blob stream whose only holder is the reader leaves the pending read
  // unresolved forever (seen in tests/browser when files follow each other ~150 ms apart).
  self.activeRead = { file, stream };
  const total = file.size;
  let offset = 0;
  const read = (buffer) => reader.read(new Uint8Array(buffer), { min: chunkBytes });
  /** The buffer no read holds (fed already, free for the next read). */
  let free = readAhead ? new ArrayBuffer(chunkBytes) : null;
  let pending = read(new ArrayBuffer(chunkBytes));
  const stages = newStages();
  try {
    for (;;) {
      let t = performance.now();
      const { value, done } = await pending;
      t = stages.lap("readMs", t);
      if (!done && readAhead) pending = read(free);
      if (value) {
        validator.feed(value);
        offset += value.byteLength;
        if (readAhead) free = value.buffer;
        else if (!done) pending = read(value.buffer);
        stages.chunks += 1;
      }
      t = stages.lap("feedMs", t);
      const events = validator.drainEvents();
      if (events.length) self.postMessage({ type: "events", id, events });
      progress(id, offset, total);
      sampleMemory();
      stages.lap("otherMs", t);
      if (done) break;
    }
    await reader.cancel().catch(() => {});
    self.activeRead = null;
    const events = validator.drainEvents();
    if (events.length) self.postMessage({ type: "events", id, events });
    const t = performance.now();
    const report = validator.finish();
    stages.lap("finishMs", t);
    return { report, bytesRead: offset, stages };
  } finally {
    validator.free();
  }
}

/** The decoding workers, kept between validations (each costs a wasm instantiation). */
let decoderPool = [];
/** Numbers each parallel validation (see validateParallel). */
let session = 0;

/** `count` decoding workers, started (and their wasm loaded) where the pool has fewer. */
async function startDecoders(count) {
  const url = new URL("./decode-worker.js", import.meta.url);
  if (!simd) url.searchParams.set("simd", "0");
  const started = [];
  while (decoderPool.length + started.length < count) started.push(new Worker(url, { type: "module" }));
  await Promise.all(started.map((worker) => new Promise((resolve, reject) => {
    worker.onmessage = (event) => (event.data.type === "ready" ? resolve() : reject(new Error(event.data.message)));
    worker.onerror = (event) => reject(new Error(event.message || "a decoding worker failed to start"));
  })));
  decoderPool.push(...started);
  return decoderPool.slice(0, count);
}

/** After a failure a decoder may still be busy with a stale chunk: start afresh next time. */
function dropDecoders() {
  for (const worker of decoderPool) worker.terminate();
  decoderPool = [];
}

/**
 * Parallel inflate: chunks are decoded on `count` workers, accepted in file order. Resolves to
 * the same {report, bytesRead, stages} as the other loops, or to {fallback: why} when the file must be
 * read sequentially (not gzip, one chunk, or any doubt: corrupt data, a bomb, trailing data;
 * a chunk over its output cap is decoded by the validation worker itself, in bounded pieces).
 * Events are held back until the parallel result stands, so a fallback never shows an issue
 * twice.
 */
async function validateParallel(id, file, settings, chunkBytes, count) {
  const head = new Uint8Array(new FileReaderSync().readAsArrayBuffer(file.slice(0, byom.ParallelValidator.headerProbe())));
  let pv;
  try {
    pv = new byom.ParallelValidator(settings ?? undefined, file.size, head, chunkBytes);
  } catch (error) {
    return { fallback: String(error && error.message ? error.message : error) };
  }
  const stages = { ...newStages(), decodeMs: 0, waitMs: 0, acceptMs: 0 };
  let decoders = [];
  const held = [];
  try {
    let t = performance.now();
    // No more decoders than chunks the memory budget lets be in flight (each costs a worker and
    // a wasm instance): with 3 MiB chunks that is 3, whatever hardwareConcurrency says.
    count = Math.min(count, pv.inFlight(count));
    stages.decoders = count;
    decoders = await startDecoders(count);
    stages.startMs = performance.now() - t;
    const n = pv.chunks;
    const inFlight = pv.inFlight(count);
    // Each validation's messages carry its own session number: a decoder still busy with an
    // earlier file's chunk must never have that chunk taken for this file's.
    session += 1;
    const plan = { type: "plan", session, file, fileLen: file.size, chunkBytes: pv.chunkBytes, deflateStart: pv.deflateStart };
    for (const worker of decoders) worker.postMessage(plan);
    const done = new Map();
    let wake = null;
    let failure = null;
    for (const worker of decoders) {
      worker.onmessage = (event) => {
        const m = event.data;
        if (m.session !== session) return;
        if (m.type === "decoded") done.set(m.index, m);
        else failure = new Error(m.message);
        if (wake) wake();
      };
      worker.onerror = (event) => {
        failure = new Error(event.message || "a decoding worker failed");
        if (wake) wake();
      };
    }
    let next = 0;
    let expected = 0;
    const issue = () => {
      while (next < n && next - expected < inFlight) {
        decoders[next % count].postMessage({ type: "decode", session, index: next, start: pv.readStart(next), length: pv.readLength(next) });
        next += 1;
      }
    };
    issue();
    while (pv.needsMore()) {
      t = performance.now();
      while (!done.has(expected) && !failure) await new Promise((resolve) => { wake = resolve; });
      wake = null;
      if (failure) throw failure;
      t = stages.lap("waitMs", t);
      const m = done.get(expected);
      done.delete(expected);
      stages.decodeMs += m.decodeMs;
      pv.accept(expected, m.input, m.decoded);
      // Both buffers go back to the decoder that filled them, for its next chunks.
      const buffers = m.input.buffer === m.decoded.buffer ? [m.input.buffer] : [m.input.buffer, m.decoded.buffer];
      decoders[expected % count].postMessage({ type: "recycle", buffers }, buffers);
      expected += 1;
      t = stages.lap("acceptMs", t);
      issue();
      held.push(...pv.drainEvents());
      progress(id, Math.min(expected * pv.chunkBytes, file.size), file.size);
      sampleMemory();
      stages.lap("otherMs", t);
      stages.chunks += 1;
    }
    held.push(...pv.drainEvents());
    t = performance.now();
    const trailer = pv.trailerOffset();
    const tail = trailer === undefined
      ? new Uint8Array(0)
      : new Uint8Array(new FileReaderSync().readAsArrayBuffer(file.slice(trailer, Math.min(trailer + 9, file.size))));
    const report = pv.finish(tail);
    stages.lap("finishMs", t);
    if (held.length) self.postMessage({ type: "events", id, events: held });
    progress(id, file.size, file.size);
    // Chunks past the end of the stream (or past a fatal error) are still being decoded: stop
    // those decoders rather than let the next file wait for them.
    if (next > expected) dropDecoders();
    return { report, bytesRead: file.size, stages };
  } catch (error) {
    // A doubt (or a failure of this path): the sequential reader decides.
    dropDecoders();
    return { fallback: String(error && error.message ? error.message : error) };
  } finally {
    for (const worker of decoders) worker.onmessage = worker.onerror = null;
    pv.free();
  }
}

/** The same loop inside wasm (byom.validateBlob), kept to compare the two in the benchmark. */
function validateInWasm(id, file, settings, chunkBytes) {
  let bytesRead = 0;
  const report = byom.validateBlob(
    file,
    settings ?? undefined,
    (read, total, events) => {
      bytesRead = read;
      if (events.length) self.postMessage({ type: "events", id, events });
      progress(id, read, total);
      sampleMemory();
    },
    chunkBytes,
  );
  return { report, bytesRead };
}

async function handle(message) {
  const { type, id } = message;
  if (type === "validate") {
    // An explicit chunkBytes (tests, the benchmark) applies to whichever reader runs.
    const chunkBytes = message.chunkBytes || DEFAULT_CHUNK_BYTES;
    const started = performance.now();
    const modes = { wasm: validateInWasm, stream: validateStream, js: validateInJs };
    let result = null;
    if (message.mode === "parallel") {
      const decoders = Math.max(1, message.decoders || navigator.hardwareConcurrency || 2);
      result = await validateParallel(id, message.file, message.settings, message.chunkBytes || PARALLEL_CHUNK_BYTES, decoders);
    }
    if (!result || result.fallback) {
      const fallback = result && result.fallback;
      const run = modes[message.mode] || modes[DEFAULT_MODE];
      result = await run(id, message.file, message.settings, chunkBytes, message.readAhead === true);
      if (fallback) result.stages = { ...result.stages, fallback };
    }
    const { report, bytesRead, stages } = result;
    const elapsedMs = performance.now() - started;
    const { lap, ...stageTimes } = stages || { simd };
    self.postMessage({ type: "report", id, report, elapsedMs, bytesRead, memory: memoryStats(), stages: stageTimes });
  } else if (type === "inspect") {
    const bytes = new Uint8Array(new FileReaderSync().readAsArrayBuffer(message.file));
    const result = byom.inspectPt(bytes, message.file.name, message.settings ?? undefined);
    self.postMessage({ type: "inspection", id, result });
  } else if (type === "pack") {
    const bytes = new Uint8Array(new FileReaderSync().readAsArrayBuffer(message.file));
    // No post-processing chosen: the core's usual one for the stage type (one list, in Rust).
    const options = { ...message.options };
    if (!options.postprocessing) options.postprocessing = byom.defaultPostProcessing(options.model_type ?? "classification");
    const packed = byom.packDetailed(bytes, message.file.name, JSON.stringify(options));
    self.postMessage({ type: "packed", id, packed }, [packed.package.buffer]);
  } else if (type === "memory") {
    self.postMessage({ type: "memory", id, memory: memoryStats() });
  } else {
    throw new Error(`unknown message type ${type}`);
  }
}

const forceFallback = new URLSearchParams(self.location.search).get("simd") === "0";
const ready = loadValidator({ simd: forceFallback ? false : undefined }).then((loaded) => {
  ({ byom, memory, simd } = loaded);
  sampleMemory();
  self.postMessage({
    type: "ready", version: byom.version(), defaultSettings: byom.defaultSettings(), postProcessingTypes: byom.postProcessingTypes(), simd,
  });
});

self.onmessage = async (event) => {
  const message = event.data;
  try {
    await ready;
    await handle(message);
  } catch (error) {
    self.postMessage({ type: "error", id: message && message.id, message: String(error && error.message ? error.message : error) });
  }
};
