// The main thread's handle on the validation worker: request/response by id, plus streaming
// callbacks (progress, events). Cancelling a validation terminates the worker and starts a
// fresh one: a synchronous read loop cannot be interrupted any other way, and a new worker
// costs only the (cached) wasm compile.

export class WorkerClient {
  /** `simd: false` makes the worker load the plain (non-SIMD) wasm build (web/wasm.js). */
  constructor({ simd } = {}) {
    this.forceFallback = simd === false;
    this.nextId = 1;
    this.pending = new Map();
    this.start();
  }

  start() {
    const url = new URL("./worker.js", import.meta.url);
    if (this.forceFallback) url.searchParams.set("simd", "0");
    this.worker = new Worker(url, { type: "module" });
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.worker.onerror = (event) => {
        event.preventDefault();
        const error = new Error(`The validator could not start: ${event.message || "worker error"}`);
        reject(error);
        for (const { reject: fail } of this.pending.values()) fail(error);
        this.pending.clear();
      };
    });
    this.worker.onmessage = (event) => this.dispatch(event.data);
  }

  dispatch(message) {
    if (message.type === "ready") {
      this.resolveReady(message);
      return;
    }
    const request = this.pending.get(message.id);
    if (!request) return;
    switch (message.type) {
      case "progress":
        if (request.onProgress) request.onProgress(message.read, message.total);
        break;
      case "events":
        if (request.onEvents) request.onEvents(message.events);
        break;
      case "error":
        this.pending.delete(message.id);
        request.reject(new Error(message.message));
        break;
      default:
        this.pending.delete(message.id);
        request.resolve(message);
    }
  }

  /** Send one request; resolves with the final message (report, inspection, packed). */
  request(payload, { onProgress, onEvents } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress, onEvents });
      this.worker.postMessage({ ...payload, id });
    });
  }

  /** Abort everything in flight and start a fresh worker. */
  restart() {
    this.worker.terminate();
    const error = Object.assign(new Error("Cancelled."), { cancelled: true });
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
    this.start();
  }
}
