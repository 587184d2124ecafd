// A decoding worker for parallel inflate (issue 14): started by the validation worker
// (worker.js, mode "parallel"), one per decoder, each with its own wasm instance. It reads its
// chunk straight from the File (Blob.slice: no bytes pass through the validation worker),
// decodes it with byom.decodeChunk and sends the result back with the chunk's bytes
// (transferred, not copied): the validation worker's ParallelValidator proves every chunk
// against sequential decoding, so nothing decided here can change a verdict.
//
// Messages in:  {type: "plan", session, file, fileLen, chunkBytes, deflateStart}
//               {type: "decode", session, index, start, length}
//               {type: "recycle", buffers: ArrayBuffer[]} (a chunk's two buffers, accepted)
// Messages out: {type: "ready"}
//               {type: "decoded", session, index, input: Uint8Array, decoded: Uint8Array, decodeMs}
//               {type: "error", session, index, message}
// `session` numbers the validation; chunks of an earlier one are dropped, never answered.
import { loadValidator } from "./wasm.js";

let byom = null;
let plan = null;
/**
 * Buffers the validation worker handed back once it accepted their chunk: the next reads and
 * results go into them. A new ArrayBuffer per read and per result was what grew the renderer
 * by ~200 MiB (V8 frees them only at a late GC; docs/bench-parallel-inflate.md).
 */
const pool = [];
/** At most this many buffers wait in the pool (the chunks in flight bound what comes back). */
const POOL_MAX = 8;
/** Streams with a read under way: a Blob stream collected mid-read never answers (Chromium). */
const reading = new Set();
/** Chunks asked for, in order, each with its read already under way. */
const queue = [];
let draining = false;

const forceFallback = new URLSearchParams(self.location.search).get("simd") === "0";
const ready = loadValidator({ simd: forceFallback ? false : undefined }).then((loaded) => {
  byom = loaded.byom;
  self.postMessage({ type: "ready" });
});
// The validation worker waits for "ready" or "error" from each decoder it starts.
ready.catch((error) => self.postMessage({ type: "error", message: `the wasm did not load: ${error && error.message ? error.message : error}` }));

self.onmessage = (event) => {
  const message = event.data;
  if (message.type === "plan") {
    plan = message;
    return;
  }
  if (message.type === "recycle") {
    // Only buffers of the pool's one size come back in (a result that did not fit was new).
    for (const buffer of message.buffers) if (plan && buffer.byteLength === bufferSize(plan) && pool.length < POOL_MAX) pool.push(buffer);
    return;
  }
  // The read starts now (a byte stream: the browser fetches the bytes off this thread), so the
  // next chunk's bytes arrive while this worker decodes the current one. Measured against
  // FileReaderSync, which holds the thread for the read (docs/bench-web.md).
  const { session, index, start, length } = message;
  if (session !== plan.session) return; // a chunk of an earlier file, asked for before its plan changed
  const bytes = readRange(plan.file, start, length, take(Math.max(length, bufferSize(plan))));
  bytes.catch(() => {}); // handled where it is awaited; a dropped chunk's failure is no one's
  queue.push({ session, index, bytes, plan });
  if (!draining) drain();
};

/** Decode the queued chunks one by one, in the order they were asked for. */
async function drain() {
  draining = true;
  try {
    await ready;
    while (queue.length) {
      const { session, index, bytes, plan: of } = queue.shift();
      if (session !== plan.session) continue; // the validation that asked for it is over
      try {
        const input = await bytes;
        const t = performance.now();
        const spare = pool.pop();
        const decoded = byom.decodeChunk(of.fileLen, of.chunkBytes, of.deflateStart, index, input, spare && new Uint8Array(spare));
        if (spare && decoded.buffer !== spare) pool.push(spare); // the result did not fit: a new array
        const decodeMs = performance.now() - t;
        // Transferred, not copied: neither buffer stays behind in this worker.
        self.postMessage({ type: "decoded", session, index, input, decoded, decodeMs }, [input.buffer, decoded.buffer]);
      } catch (error) {
        self.postMessage({ type: "error", session, index, message: String(error && error.message ? error.message : error) });
      }
    }
  } finally {
    draining = false;
  }
}

/**
 * The pool's one buffer size: a read range (the chunk + the core's 256 KiB overlap) fits, and so
 * does a chunk's result on weight-like data (the chunk inflated, ~1.1x, plus its window-marker
 * head and block list); a result that does not fit gets a new array.
 */
function bufferSize(of) {
  return 2 * of.chunkBytes + (256 << 10);
}

/** A pooled buffer of at least `size` bytes, or a new one. */
function take(size) {
  const i = pool.findIndex((buffer) => buffer.byteLength >= size);
  return i >= 0 ? pool.splice(i, 1)[0] : new ArrayBuffer(size);
}

/**
 * Bytes [start, start + length) of `file`, read into `buffer` by one BYOB read with `min`
 * (as the default reader in worker.js reads): no new buffers.
 */
async function readRange(file, start, length, buffer) {
  const stream = file.slice(start, start + length).stream();
  reading.add(stream);
  const reader = stream.getReader({ mode: "byob" });
  try {
    const { value } = await reader.read(new Uint8Array(buffer, 0, length), { min: length });
    const got = value ? value.byteLength : 0;
    if (got !== length) throw new Error(`the file gave ${got} of ${length} bytes at offset ${start}`);
    return value;
  } finally {
    reader.releaseLock();
    reading.delete(stream);
  }
}
