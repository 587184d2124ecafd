// The page's resumable (tus) upload against the real byom-server: a lost connection mid-upload
// is retried from the server's offset, and after a reload (picking the same file again, which
// validates it locally first) the upload goes on from where it stopped instead of byte 0.
// The threshold and chunk size are lowered through the page's localStorage settings so a small
// fixture goes resumable in several PATCHes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { SERVER_BIN, assertWasmBuilt, cliReport, launchBrowser, listFixtures, startByomServer } from "./helpers.mjs";

const fixtures = listFixtures();
const skip = !existsSync(SERVER_BIN)
  ? `${SERVER_BIN} is missing: build it with \`cargo build -p byom-server\` (LOUDLY skipped)`
  : !fixtures && "tests/out/fixtures/expected.json is missing: generate the fixtures first (LOUDLY skipped)";

let browser;
let server;
let page;
let file;
const pageErrors = [];

async function validFixture() {
  for (const name of ["minimal_required_only", "gzip_level_1", "nonsquare_320x240"]) {
    const f = fixtures.find((x) => x.name === name);
    if (f && (await cliReport(f.file)).valid) return f.file;
  }
  throw new Error("no small valid fixture");
}

async function login() {
  await page.waitForSelector("body[data-ready=true]");
  await page.fill('[data-testid="token-input"]', server.token);
  await page.waitForSelector('[data-testid="token-status"][data-state="ok"]', { timeout: 10_000 });
}

async function pickAndValidate() {
  await page.setInputFiles('[data-testid="package-input"]', file);
  const name = file.split("/").pop();
  await page.locator(`[data-testid="verdict"][data-valid="true"][data-file="${name}"]`).waitFor({ timeout: 60_000 });
}

before(async () => {
  if (skip) return;
  assertWasmBuilt();
  file = await validFixture();
  server = await startByomServer();
  browser = await launchBrowser();
  page = await (await browser.newContext({ viewport: { width: 1366, height: 768 } })).newPage();
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(`${server.url}/`);
  const size = statSync(file).size;
  await page.evaluate((chunk) => {
    localStorage.setItem("byom.resumableThreshold", "1");
    localStorage.setItem("byom.resumableChunk", String(chunk));
  }, Math.ceil(size / 4));
  await login();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("a lost connection is retried from the server's offset", { skip, timeout: 120_000 }, async () => {
  let patches = 0;
  let dropped = 0;
  await page.route("**/api/v1/uploads/*", (route) => {
    if (route.request().method() === "PATCH" && ++patches === 2 && !dropped) {
      dropped += 1;
      return route.abort("connectionfailed");
    }
    return route.continue();
  });
  await pickAndValidate();
  await page.click('[data-testid="upload-button"]');
  await page.locator("#upload-result .ok").waitFor({ timeout: 90_000 });
  await page.unroute("**/api/v1/uploads/*");
  assert.equal(dropped, 1);
  assert.ok(patches >= 5, `4 chunks and one retry, saw ${patches} PATCHes`);
  assert.ok(Number(await page.locator("#upload-progress-text").getAttribute("data-resumed-at")) > 0);
  assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("byom.upload:")).length), 0);
  assert.deepEqual(pageErrors, []);
});

test("after a reload the same file resumes instead of starting again", { skip, timeout: 120_000 }, async () => {
  // The second PATCH never answers: the page is reloaded while it hangs.
  let patches = 0;
  let posts = 0;
  await page.route("**/api/v1/uploads**", (route) => {
    const method = route.request().method();
    if (method === "POST") posts += 1;
    if (method === "PATCH" && ++patches === 2) return; // left hanging
    return route.continue();
  });
  await pickAndValidate();
  await page.click('[data-testid="upload-button"]');
  await page.waitForFunction(() => Object.keys(localStorage).some((k) => k.startsWith("byom.upload:")));
  while (patches < 2) await new Promise((ok) => setTimeout(ok, 50));
  await page.unroute("**/api/v1/uploads**");
  await page.reload();
  await login();
  let resumedPosts = 0;
  await page.route("**/api/v1/uploads**", (route) => {
    if (route.request().method() === "POST") resumedPosts += 1;
    return route.continue();
  });
  await pickAndValidate();
  await page.click('[data-testid="upload-button"]');
  await page.locator("#upload-result .ok").waitFor({ timeout: 90_000 });
  assert.equal(posts, 1);
  assert.equal(resumedPosts, 0, "the reloaded page created a new upload instead of resuming");
  assert.ok(Number(await page.locator("#upload-progress-text").getAttribute("data-resumed-at")) > 0);
  assert.deepEqual(pageErrors, []);
});
