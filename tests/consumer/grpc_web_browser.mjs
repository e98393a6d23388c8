// gRPC-web from a web page, as a browser client (grpc-web, connect-web, nice-grpc-web) does
// it: headless Chromium (Debian's, driven by playwright-core) opens a page served from a
// second origin (another local port), and the page calls fetch() on the service's gRPC-web
// endpoint POST <service>/zitadel.auth.v1.AuthService/<Method> with content-type
// application/grpc-web+proto, x-grpc-web: 1 and authorization: a cross-origin request with
// non-safelisted headers, so the browser sends a CORS preflight first and lets the page read
// only the response headers that CORS exposes (pitfall 2 of GRPC-NOTES.md).
// run.sh runs it as:
//   PHONEPROOF_BASE_URL=http://127.0.0.1:PORT PHONEPROOF_TOKEN=... PHONEPROOF_ORG=...
//   PHONEPROOF_SMS_LOG_FILE=... PHONEPROOF_PROTO_DIR=proto node tests/consumer/grpc_web_browser.mjs
// The token must belong to a user with no phone yet. Exits 0 when every step passed.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import protobuf from "protobufjs";
import { assert, eq, finish, newCode as newCodeIn, smsCodes, step, tally } from "./checks.mjs";

const BASE_URL = process.env.PHONEPROOF_BASE_URL;
const TOKEN = process.env.PHONEPROOF_TOKEN;
const ORG = process.env.PHONEPROOF_ORG;
const SMS_LOG = process.env.PHONEPROOF_SMS_LOG_FILE;
const PROTO_DIR = process.env.PHONEPROOF_PROTO_DIR ?? "proto";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (!BASE_URL || !TOKEN || !ORG || !SMS_LOG) {
  console.error(
    "PHONEPROOF_BASE_URL, PHONEPROOF_TOKEN, PHONEPROOF_ORG and PHONEPROOF_SMS_LOG_FILE " +
      "are required",
  );
  process.exit(2);
}
const INPUT_PHONE = "+41 79 555 03 03";
const E164 = "+41795550303";
const TIMEOUT = 15_000;

const root = new protobuf.Root();
root.resolvePath = (_origin, target) =>
  target.startsWith("google/protobuf/") ? target : join(PROTO_DIR, target);
root.loadSync(["zitadel/auth.proto", "zitadel/message.proto", "google/rpc/status.proto"]);
const type = (name) => root.lookupType(name);


const smsCodesTo = (to) => smsCodes(SMS_LOG, to);
const newCode = (to, seen) => newCodeIn(SMS_LOG, to, seen);

// Splits a gRPC-web response body into frames: [{flag, payload: Buffer}].
function frames(body) {
  const out = [];
  let at = 0;
  while (at < body.length) {
    assert(body.length - at >= 5, `truncated frame header at byte ${at}`);
    const length = body.readUInt32BE(at + 1);
    assert(body.length - at - 5 >= length, `truncated frame at byte ${at}`);
    out.push({ flag: body[at], payload: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

// A successful unary answer: one data frame (flag 0x00) with the response message, then one
// trailer frame (flag 0x80) with "grpc-status:0"; nothing in the headers.
function decodeSuccess(result, responseType) {
  eq(result.status, 200, "HTTP status");
  eq(result.headers["content-type"], "application/grpc-web+proto", "content-type");
  eq(result.headers["grpc-status"], null, "grpc-status header on a success");
  const body = Buffer.from(result.body);
  const [data, trailer, ...rest] = frames(body);
  assert(data && trailer && rest.length === 0, `${frames(body).length} frames, expected 2`);
  eq(data.flag, 0x00, "first frame flag");
  eq(trailer.flag, 0x80, "second frame flag");
  const trailers = Object.fromEntries(
    trailer.payload
      .toString("latin1")
      .split("\r\n")
      .filter((line) => line)
      .map((line) => {
        const colon = line.indexOf(":");
        return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
      }),
  );
  eq(trailers["grpc-status"], "0", "trailer grpc-status");
  return type(responseType).toObject(type(responseType).decode(data.payload), {
    longs: String,
    defaults: true,
  });
}

// An error answer: HTTP 200, empty body, grpc-status / grpc-message (percent-decoded, as
// clients do) / grpc-status-details-bin in the headers, readable because CORS exposes them.
function checkError(result, code, message, detail) {
  eq(result.status, 200, "HTTP status");
  eq(result.body.length, 0, "body length");
  eq(result.headers["grpc-status"], String(code), "grpc-status");
  eq(decodeURIComponent(result.headers["grpc-message"] ?? ""), message, "grpc-message");
  const bin = result.headers["grpc-status-details-bin"];
  if (!detail) {
    eq(bin, null, "grpc-status-details-bin");
    return;
  }
  assert(bin, "no grpc-status-details-bin readable by the page");
  const raw = Buffer.from(bin, "base64"); // accepts the unpadded form gRPC sends
  assert(raw.includes(detail[0]), `details-bin does not contain ${detail[0]}`);
  const status = type("google.rpc.Status").decode(raw);
  eq([status.code, status.message], [code, message], "google.rpc.Status code and message");
  eq(status.details.length, 1, "details count");
  eq(status.details[0].type_url, "type.googleapis.com/zitadel.v1.ErrorDetail", "type_url");
  const errorDetail = type("zitadel.v1.ErrorDetail").decode(status.details[0].value);
  eq([errorDetail.id, errorDetail.message], detail, "ErrorDetail id and message");
}

// The page the requests come from, on a second origin.
const pageServer = createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end("<!doctype html><title>grpc-web consumer</title><p>grpc-web consumer</p>");
});
await new Promise((resolve) => pageServer.listen(0, "127.0.0.1", resolve));
const PAGE_ORIGIN = `http://127.0.0.1:${pageServer.address().port}`;

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
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);

  // One gRPC-web unary call made by the page: frames the message (flag 0x00, 4-byte big-endian
  // length, protobuf bytes), POSTs it, returns the status, the headers the page can read and
  // the body bytes. `message` is the protobuf encoding, as an array of byte values.
  const grpcWeb = (method, message, { auth = true } = {}) =>
    page.evaluate(
      async ({ url, token, message, auth }) => {
        const frame = new Uint8Array(5 + message.length);
        new DataView(frame.buffer).setUint32(1, message.length);
        frame.set(message, 5);
        const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
        if (auth) headers.authorization = `Bearer ${token}`;
        const response = await fetch(url, { method: "POST", headers, body: frame });
        const names = ["content-type", "grpc-status", "grpc-message", "grpc-status-details-bin"];
        return {
          status: response.status,
          headers: Object.fromEntries(names.map((name) => [name, response.headers.get(name)])),
          body: Array.from(new Uint8Array(await response.arrayBuffer())),
        };
      },
      {
        url: `${BASE_URL}/zitadel.auth.v1.AuthService/${method}`,
        token: TOKEN,
        message: Array.from(message),
        auth,
      },
    );
  const encode = (name, value) => type(name).encode(type(name).create(value)).finish();

  await step(`the page loads from another origin (${PAGE_ORIGIN})`, async () => {
    const response = await page.goto(`${PAGE_ORIGIN}/`);
    eq(response?.status(), 200, "page status");
    const origin = await page.evaluate(() => window.location.origin);
    eq(origin, PAGE_ORIGIN, "page origin");
    assert(origin !== new URL(BASE_URL).origin, "the page is on the service's origin");
  });

  await step("VerifyMyPhone {code: X} without a phone: grpc-status 5, COMMAND-Rsj8c", async () => {
    const message = [0x0a, 0x01, 0x58]; // field 1 (code), length 1, "X"
    const encoded = encode("zitadel.auth.v1.VerifyMyPhoneRequest", { code: "X" });
    eq(Array.from(encoded), message, "encoding");
    checkError(await grpcWeb("VerifyMyPhone", message), 5, "Code not found (COMMAND-Rsj8c)", [
      "COMMAND-Rsj8c",
      "Code not found",
    ]);
  });

  await step("GetMyPhone without authorization: grpc-status 16, no details", async () => {
    checkError(await grpcWeb("GetMyPhone", [], { auth: false }), 16, "auth header missing");
  });

  await step('SetMyPhone "0795550303": grpc-status 3, prefix message, no details', async () => {
    const message = encode("zitadel.auth.v1.SetMyPhoneRequest", { phone: "0795550303" });
    checkError(
      await grpcWeb("SetMyPhone", message),
      3,
      'invalid SetMyPhoneRequest.Phone: value does not have prefix "+"',
    );
  });

  await step("GetMyPhone (empty frame): a data frame, then trailer grpc-status:0", async () => {
    const response = decodeSuccess(
      await grpcWeb("GetMyPhone", []),
      "zitadel.auth.v1.GetMyPhoneResponse",
    );
    eq(response.phone, { phone: "", isPhoneVerified: false }, "phone");
    eq(response.details?.resourceOwner, ORG, "resourceOwner");
  });

  const state = {};
  await step(`SetMyPhone "${INPUT_PHONE}": details, an SMS with the code`, async () => {
    const seen = smsCodesTo(E164).length;
    const message = encode("zitadel.auth.v1.SetMyPhoneRequest", { phone: INPUT_PHONE });
    const response = decodeSuccess(
      await grpcWeb("SetMyPhone", message),
      "zitadel.auth.v1.SetMyPhoneResponse",
    );
    eq(response.details?.resourceOwner, ORG, "resourceOwner");
    const { sequence } = response.details;
    assert(/^[1-9][0-9]*$/.test(sequence), `sequence ${sequence}`);
    state.code = await newCode(E164, seen);
  });

  await step("VerifyMyPhone with the code: details", async () => {
    const message = encode("zitadel.auth.v1.VerifyMyPhoneRequest", { code: state.code });
    const response = decodeSuccess(
      await grpcWeb("VerifyMyPhone", message),
      "zitadel.auth.v1.VerifyMyPhoneResponse",
    );
    eq(response.details?.resourceOwner, ORG, "resourceOwner");
  });

  await step(`GetMyPhone: ${E164}, verified`, async () => {
    const response = decodeSuccess(
      await grpcWeb("GetMyPhone", []),
      "zitadel.auth.v1.GetMyPhoneResponse",
    );
    eq(response.phone, { phone: E164, isPhoneVerified: true }, "phone");
  });
} catch (err) {
  tally.failed += 1;
  console.log(`FAIL ${err?.message ?? err}`);
} finally {
  if (context) await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  pageServer.close();
}
finish("grpc_web_browser");
