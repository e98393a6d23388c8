// Swagger UI as a person uses it, in Debian's Chromium driven by playwright-core (no browser is
// downloaded). run.sh runs it as:
//   PHONEPROOF_BASE_URL=http://127.0.0.1:PORT PHONEPROOF_TOKEN=... \
//   PHONEPROOF_SCREENSHOT=target/swagger-ui.png node tests/consumer/swagger_ui.mjs
// The token must belong to a user with no phone yet. Exits 0 when every step passed.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { assert, finish, step as stepOf, tally } from "./checks.mjs";

const BASE_URL = process.env.PHONEPROOF_BASE_URL;
const TOKEN = process.env.PHONEPROOF_TOKEN;
const SCREENSHOT = process.env.PHONEPROOF_SCREENSHOT ?? "target/swagger-ui.png";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (!BASE_URL || !TOKEN) {
  console.error("PHONEPROOF_BASE_URL and PHONEPROOF_TOKEN are required");
  process.exit(2);
}

const EXPECTED = [
  ["GET", "/auth/v1/users/me/phone", "Get My Phone"],
  ["PUT", "/auth/v1/users/me/phone", "Set My Phone"],
  ["DELETE", "/auth/v1/users/me/phone", "Remove Phone Number"],
  ["POST", "/auth/v1/users/me/phone/_resend_verification", "Resend Phone verification"],
  ["POST", "/auth/v1/users/me/phone/_verify", "Verify Phone"],
];
const TIMEOUT = 15_000;

const problems = []; // console errors and page errors, reported at the end
// Later steps depend on each one.
const step = (name, fn) => stepOf(name, fn, { rethrow: true });

const userDataDir = mkdtempSync(join(tmpdir(), "phoneproof-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));

  await step("Swagger UI loads the document", async () => {
    const response = await page.goto(`${BASE_URL}/swagger-ui/`);
    assert(response?.status() === 200, `GET /swagger-ui/ gave ${response?.status()}`);
    await page.locator(".opblock-tag", { hasText: "User Phone" }).first().waitFor();
    await page.locator(".opblock").first().waitFor();
  });

  await step('the five operations appear under the "User Phone" tag', async () => {
    const section = page.locator(".opblock-tag-section", {
      has: page.locator(".opblock-tag", { hasText: "User Phone" }),
    });
    assert((await section.count()) === 1, `${await section.count()} "User Phone" sections`);
    const blocks = section.locator(".opblock");
    const found = [];
    for (let i = 0; i < (await blocks.count()); i += 1) {
      const block = blocks.nth(i);
      found.push([
        (await block.locator(".opblock-summary-method").innerText()).trim().toUpperCase(),
        (await block.locator(".opblock-summary-path").innerText()).replace(/\u200b/g, "").trim(),
        (await block.locator(".opblock-summary-description").innerText()).trim(),
      ]);
    }
    const key = (op) => op.join(" ");
    const want = EXPECTED.map(key).sort();
    const got = found.map(key).sort();
    assert(
      JSON.stringify(want) === JSON.stringify(got),
      `operations under "User Phone": ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`,
    );
    const all = await page.locator(".opblock").count();
    assert(all === EXPECTED.length, `${all} operations on the page, expected ${EXPECTED.length}`);
  });

  await step("Authorize with the token (BearerAuth)", async () => {
    await page.locator(".auth-wrapper .btn.authorize").click();
    const modal = page.locator(".modal-ux");
    await modal.waitFor();
    const scheme = modal.locator(".auth-container", { hasText: "BearerAuth" });
    assert((await scheme.count()) === 1, "no BearerAuth section in the Authorize dialog");
    await scheme.locator("input").first().fill(TOKEN);
    await scheme.locator("button.authorize").click();
    // Once the token is set, "Logout" replaces the dialog's "Authorize" button.
    await scheme.locator("button", { hasText: "Logout" }).waitFor();
    await scheme.locator("button.btn-done").click();
    await modal.waitFor({ state: "detached" });
    await page.locator(".auth-wrapper .btn.authorize.locked").waitFor();
  });

  const setOp = page.locator(".opblock.opblock-put", {
    has: page.locator(".opblock-summary-description", { hasText: "Set My Phone" }),
  });

  await step('Set My Phone: Try it out with {"phone": "+41 71 000 00 01"}, Execute', async () => {
    await setOp.locator(".opblock-summary").first().click();
    await setOp.locator("button.try-out__btn").click();
    const body = setOp.locator("textarea.body-param__text");
    await body.fill(JSON.stringify({ phone: "+41 71 000 00 01" }, null, 2));
    await setOp.locator("button.execute").click();
    await setOp.locator(".live-responses-table tr.response .response-col_status").first().waitFor();
  });

  await step("the live response shows 200 and a body with details", async () => {
    const live = setOp.locator(".live-responses-table tr.response");
    const status = (await live.locator(".response-col_status").first().innerText()).trim();
    const body = await live.locator(".response-col_description").first().innerText();
    assert(status === "200", `status ${JSON.stringify(status)}; body ${body}`);
    assert(body.includes('"details"'), `response body without "details": ${body}`);
    const curl = await setOp.locator(".curl-command").first().innerText();
    assert(curl.includes("Authorization: Bearer"), `request sent without the token: ${curl}`);
  });

  await step(`screenshot saved to ${SCREENSHOT}`, async () => {
    // The viewport around the live response: the request, its curl line and the 200 answer.
    await setOp.locator(".live-responses-table").scrollIntoViewIfNeeded();
    await setOp.locator("button.execute, .execute-wrapper").first().scrollIntoViewIfNeeded();
    await page.screenshot({ path: SCREENSHOT });
  });

  await step("no console error and no page error", async () => {
    assert(problems.length === 0, problems.join("\n"));
  });
} catch (err) {
  if (tally.failed === 0) {
    tally.failed += 1;
    console.log(`FAIL ${err?.message ?? err}`);
  }
  for (const problem of problems) console.log(`     ${problem}`);
} finally {
  if (context) await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
finish("swagger_ui");
