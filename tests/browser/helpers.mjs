// Shared by the browser tests and the benchmark: launch the system Chromium through
// playwright-core, serve the page (a tiny static server, or the real byom-server), run the CLI.
import { spawn, execFile } from "node:child_process";
import { createServer } from "node:http";
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve, sep } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const WEB_DIR = join(ROOT, "web");
export const FIXTURES_DIR = join(ROOT, "tests/out/fixtures");
export const SCREENSHOT_DIR = join(ROOT, "tests/out/screenshots");
export const CHROMIUM = process.env.BYOM_CHROMIUM || "/usr/bin/chromium";
export const CLI = process.env.BYOM_CLI || join(ROOT, "target/debug/byom");
export const SERVER_BIN = process.env.BYOM_SERVER_BIN || join(ROOT, "target/debug/byom-server");

const run = promisify(execFile);

/** Chromium flags for a quiet, reproducible headless run in a container. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  // performance.memory with precise (not bucketed) numbers, for the benchmark.
  "--enable-precise-memory-info",
];

export async function launchBrowser() {
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch {
    throw new Error("playwright-core is missing: run `npm ci` (or `npm install`) in tests/browser");
  }
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (set BYOM_CHROMIUM)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** The wasm build must exist; the tests do not build it (scripts/build-wasm.sh does). */
export function assertWasmBuilt() {
  // Both builds: the SIMD128 one and the plain fallback (web/wasm.js picks one at load time).
  for (const path of ["pkg/byom_wasm_bg.wasm", "pkg/nosimd/byom_wasm_bg.wasm"]) {
    const wasm = join(WEB_DIR, path);
    if (!existsSync(wasm)) throw new Error(`${wasm} is missing: run scripts/build-wasm.sh first`);
  }
}

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".ts": "text/plain; charset=utf-8",
  ".gz": "application/gzip",
};

/**
 * A static server for the page without the byom server: `/` is web/, `/fixtures/` the
 * generated fixtures, `/bench/` target/bench. `/api/*` answers 404 like a missing server.
 */
export async function startStaticServer(mounts = { "/": WEB_DIR, "/fixtures/": FIXTURES_DIR, "/bench/": join(ROOT, "target/bench") }) {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const prefix = prefixes.find((p) => path.startsWith(p));
    const base = prefix && mounts[prefix];
    let file = base && normalize(join(base, path.slice(prefix.length)));
    if (!file || !(file + sep).startsWith(base + sep) && file !== base) {
      res.writeHead(404).end();
      return;
    }
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, "index.html");
    if (!existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, {
      "Content-Type": MIME[extname(file)] || "application/octet-stream",
      "Content-Length": statSync(file).size,
      "Cache-Control": "no-store",
    });
    createReadStream(file).pipe(res);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((ok) => server.close(ok)) };
}

/** The admin token the tests give the real server. */
export const ADMIN_TOKEN = "byom-test-admin-token-0123456789abcdef";

/**
 * Start the real byom-server on a free loopback port with a temp data dir and the web dir.
 * Resolves once it printed `listening on http://…`. Returns {url, token, log, stop}.
 */
export async function startByomServer(extraEnv = {}) {
  if (!existsSync(SERVER_BIN)) return null;
  const dataDir = mkdtempSync(join(tmpdir(), "byom-web-test-"));
  const child = spawn(SERVER_BIN, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--web-dir", WEB_DIR], {
    cwd: ROOT,
    env: { ...process.env, BYOM_ADMIN_TOKEN: ADMIN_TOKEN, RUST_LOG: process.env.RUST_LOG || "info", ...extraEnv },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = [];
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`byom-server did not start in 60 s:\n${log.join("")}`)), 60_000);
    const onData = (chunk) => {
      log.push(chunk.toString());
      const match = /listening on (http:\/\/[^\s]+)/.exec(log.join(""));
      if (match) {
        clearTimeout(timer);
        ok(match[1].replace(/\/$/, ""));
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`byom-server exited with ${code}:\n${log.join("")}`));
    });
  });
  child.removeAllListeners("exit");
  return {
    url,
    token: ADMIN_TOKEN,
    log,
    dataDir,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((ok) => {
          const timer = setTimeout(() => { child.kill("SIGKILL"); ok(); }, 10_000);
          child.on("exit", () => { clearTimeout(timer); ok(); });
        });
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Parse Prometheus text into {"name{labels}": value}. */
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}

/** `byom validate --format json FILE` → the parsed report (exit 0 or 1 are both reports). */
export async function cliReport(file) {
  try {
    const { stdout } = await run(CLI, ["validate", "--format", "json", file], { maxBuffer: 64 << 20 });
    return JSON.parse(stdout);
  } catch (error) {
    if (error.code === 1 && error.stdout) return JSON.parse(error.stdout);
    throw error;
  }
}

/** Fixture packages: tests/out/fixtures/*.tar.gz (and anything else there) with expected.json. */
export function listFixtures() {
  const expectedPath = join(FIXTURES_DIR, "expected.json");
  if (!existsSync(expectedPath)) return null;
  const expected = JSON.parse(readFileSync(expectedPath, "utf8"));
  return Object.keys(expected)
    .map((name) => ({ name, file: findFixture(name), expected: expected[name] }))
    .filter((f) => f.file);
}

function findFixture(name) {
  for (const candidate of [name, `${name}.tar.gz`, `${name}.tgz`, `${name}.gz`]) {
    const path = join(FIXTURES_DIR, candidate);
    if (existsSync(path) && statSync(path).isFile()) return path;
  }
  return null;
}

export function codesOf(report) {
  return {
    errors: report.errors.map((i) => i.code).sort(),
    warnings: report.warnings.map((i) => i.code).sort(),
  };
}

const tempDirs = [];
// Each test file runs in its own node process: its temporary folders go when it exits.
process.on("exit", () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix = "byom-web-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A JSON call to the server's API with a bearer token; returns {status, body}. */
export async function apiCall(server, method, path, token, body) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Create `tenant` (if needed) and mint a token of `role` in it: {id, token, tenant, role}. */
export async function mintToken(server, tenant, role) {
  const made = await apiCall(server, "POST", "/api/v1/admin/tenants", server.token, { name: tenant });
  if (made.status !== 201 && made.status !== 409) throw new Error(`tenant ${tenant}: HTTP ${made.status}`);
  const minted = await apiCall(server, "POST", "/api/v1/admin/tokens", server.token, { tenant, role });
  if (minted.status !== 201) throw new Error(`token ${tenant}/${role}: HTTP ${minted.status} ${JSON.stringify(minted.body)}`);
  return minted.body;
}

/**
 * Visual smoke of a layout: the page has no horizontal overflow, nothing in the header sticks
 * out of it, and no word in a badge, pill or status is broken across lines (a word split over two
 * lines has two client rects). Returns a list of problems (empty when fine).
 */
export async function layoutProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    const width = window.innerWidth;
    if (document.documentElement.scrollWidth > width) {
      const wide = [...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > width + 0.5 && e.getClientRects().length)
        .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`);
      problems.push(`page scrollWidth ${document.documentElement.scrollWidth} > ${width}: ${wide.join(", ")}`);
    }
    const header = document.querySelector("header").getBoundingClientRect();
    for (const e of document.querySelectorAll("header *")) {
      const r = e.getBoundingClientRect();
      if (!r.width || e.closest(".visually-hidden")) continue;
      if (r.left < header.left - 0.5 || r.right > header.right + 0.5) problems.push(`header child ${e.tagName}#${e.id} overflows the header`);
    }
    for (const e of document.querySelectorAll(".badge, .pill, .token-status, .status, button")) {
      if (!e.getClientRects().length) continue;
      const walker = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const re = /\S+/g;
        for (let m = re.exec(node.data); m; m = re.exec(node.data)) {
          const range = document.createRange();
          range.setStart(node, m.index);
          range.setEnd(node, m.index + m[0].length);
          const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
          if (tops.size > 1) problems.push(`word "${m[0]}" broken across lines in ${e.tagName}.${e.className}`);
        }
      }
    }
    return problems;
  });
}
