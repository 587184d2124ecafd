// A decoding worker for parallel inflate (issue 14): started by the validation worker
// (worker.js, mode "parallel"), one per decoder, each with its own wasm instance. It reads its
// chunk straight from the File (Blob.slice: no bytes pass through the validation worker),
// decodes it with byom.decodeChunk and sends the result back with the chunk's bytes
// (transferred, not copied): the validation worker's ParallelValidator proves every chunk
// against sequential decoding, so nothing decided here can change a verdict.
//
// Messages in:  {type: "plan", session, file, fileLen, chunkBytes, deflateStart}
//               {type: "decode", session, index, start, length}
// Messages out: {type: "ready"}
//               {type: "decoded", session, index, input: Uint8Array, decoded: Uint8Array, decodeMs}
//               {type: "error", session, index, message}
// `session` numbers the validation; chunks of an earlier one are dropped, never answered.
import { loadValidator } from "./wasm.js";

let byom = null;
let plan = null;
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
  // The read starts now (Blob.arrayBuffer: the browser fetches the bytes off this thread), so
  // the next chunk's bytes arrive while this worker decodes the current one. Measured against
  // FileReaderSync, which holds the thread for the read (docs/bench-web.md).
  const { session, index, start, length } = message;
  if (session !== plan.session) return; // a chunk of an earlier file, asked for before its plan changed
  const bytes = plan.file.slice(start, start + length).arrayBuffer();
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
        const input = new Uint8Array(await bytes);
        const t = performance.now();
        const decoded = byom.decodeChunk(of.fileLen, of.chunkBytes, of.deflateStart, index, input);
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
