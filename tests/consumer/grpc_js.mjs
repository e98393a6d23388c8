// A Node gRPC client of phoneproof: @grpc/grpc-js over plaintext HTTP/2 (h2c) with stubs that
// @grpc/proto-loader builds at run time from proto/ (the well-known google/protobuf imports come
// from protobufjs's bundled copies). grpc-js is the client that catches pitfall 1 of
// GRPC-NOTES.md: a trailers-only error sent without END_STREAM shows up here as
// 13 "Received RST_STREAM with code 0", so every error below is checked for its exact code and
// message. run.sh runs it as:
//   PHONEPROOF_GRPC_TARGET=127.0.0.1:PORT PHONEPROOF_TOKEN=... PHONEPROOF_ORG=...
//   PHONEPROOF_SMS_LOG_FILE=... PHONEPROOF_PROTO_DIR=proto node tests/consumer/grpc_js.mjs
// The token must belong to a user with no phone yet. Exits 0 when every step passed.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { assert, eq, finish, newCode as newCodeIn, smsCodes, step } from "./checks.mjs";

const TARGET = process.env.PHONEPROOF_GRPC_TARGET;
const TOKEN = process.env.PHONEPROOF_TOKEN;
const ORG = process.env.PHONEPROOF_ORG;
const SMS_LOG = process.env.PHONEPROOF_SMS_LOG_FILE;
const PROTO_DIR = process.env.PHONEPROOF_PROTO_DIR ?? "proto";
if (!TARGET || !TOKEN || !ORG || !SMS_LOG) {
  console.error(
    "PHONEPROOF_GRPC_TARGET, PHONEPROOF_TOKEN, PHONEPROOF_ORG and PHONEPROOF_SMS_LOG_FILE " +
      "are required",
  );
  process.exit(2);
}

const INPUT_PHONE = "+41 79 555 01 01";
const E164 = "+41795550101";
const ERROR_DETAIL_TYPE = "type.googleapis.com/zitadel.v1.ErrorDetail";
const DEADLINE_MS = 10_000;

// Stubs, as an application would build them.
const definition = protoLoader.loadSync("zitadel/auth.proto", {
  includeDirs: [PROTO_DIR],
  keepCase: false,
  longs: String,
  defaults: true,
});
const { AuthService } = grpc.loadPackageDefinition(definition).zitadel.auth.v1;
const client = new AuthService(TARGET, grpc.credentials.createInsecure());

// google.rpc.Status and zitadel.v1.ErrorDetail, to read grpc-status-details-bin.
const root = new protobuf.Root();
root.resolvePath = (_origin, target) =>
  target.startsWith("google/protobuf/") ? target : join(PROTO_DIR, target);
root.loadSync(["google/rpc/status.proto", "zitadel/message.proto"]);
const RpcStatus = root.lookupType("google.rpc.Status");
const ErrorDetail = root.lookupType("zitadel.v1.ErrorDetail");


function metadata({ auth = true } = {}) {
  const md = new grpc.Metadata();
  if (auth === true) md.set("authorization", `Bearer ${TOKEN}`);
  else if (typeof auth === "string") md.set("authorization", auth);
  return md;
}

// One unary call; resolves to {response} or {error} (a grpc-js ServiceError).
function call(method, request, md = metadata()) {
  return new Promise((resolve) => {
    client[method](request, md, { deadline: Date.now() + DEADLINE_MS }, (error, response) =>
      resolve(error ? { error } : { response }),
    );
  });
}

async function ok(method, request, md) {
  const { error, response } = await call(method, request, md);
  assert(!error, `${method} failed: ${error?.code} ${JSON.stringify(error?.details)}`);
  return response;
}

// Asserts the call failed with exactly `code` and `message`; with `detail` ([id, text]) the
// error must carry grpc-status-details-bin = google.rpc.Status{code, message,
// [Any{ErrorDetail{id, text}}]}, without it the error must carry no details at all.
async function fails(method, request, md, code, message, detail) {
  const { error, response } = await call(method, request, md);
  assert(error, `${method} succeeded: ${JSON.stringify(response)}`);
  eq([error.code, error.details], [code, message], `${method}: code and message`);
  const bins = error.metadata.get("grpc-status-details-bin");
  if (!detail) {
    eq(bins.length, 0, "grpc-status-details-bin count");
    return;
  }
  eq(bins.length, 1, "grpc-status-details-bin count");
  const status = RpcStatus.decode(bins[0]);
  eq([status.code, status.message], [code, message], "google.rpc.Status code and message");
  eq(status.details.length, 1, "google.rpc.Status details count");
  eq(status.details[0].type_url, ERROR_DETAIL_TYPE, "details[0].type_url");
  const errorDetail = ErrorDetail.decode(status.details[0].value);
  eq([errorDetail.id, errorDetail.message], detail, "ErrorDetail id and message");
}

const smsCodesTo = (to) => smsCodes(SMS_LOG, to);
const newCode = (to, seen) => newCodeIn(SMS_LOG, to, seen);

function checkWriteDetails(details, what) {
  assert(/^[1-9][0-9]*$/.test(details?.sequence ?? ""), `${what}: sequence ${details?.sequence}`);
  assert(details.changeDate && Number(details.changeDate.seconds) > 0, `${what}: changeDate`);
  eq(details.creationDate, null, `${what}: creationDate`);
  eq(details.resourceOwner, ORG, `${what}: resourceOwner`);
  return BigInt(details.sequence);
}

// grpc.reflection.v1 and v1alpha have the same messages (only the package differs); what is
// needed of them to ask for the list of services.
const reflection = protobuf.parse(`
  syntax = "proto3";
  message ServerReflectionRequest { string host = 1; string list_services = 7; }
  message ServerReflectionResponse {
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
  message ListServiceResponse { repeated ServiceResponse service = 1; }
  message ServiceResponse { string name = 1; }
  message ErrorResponse { int32 error_code = 1; string error_message = 2; }
`).root;
const ReflectionRequest = reflection.lookupType("ServerReflectionRequest");
const ReflectionResponse = reflection.lookupType("ServerReflectionResponse");

// The service names that grpc.reflection.<version>.ServerReflection lists.
function listServices(version) {
  return new Promise((resolve, reject) => {
    const stream = client.makeBidiStreamRequest(
      `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      (message) => Buffer.from(ReflectionRequest.encode(message).finish()),
      (bytes) => ReflectionResponse.decode(bytes),
      new grpc.Metadata(),
      { deadline: Date.now() + DEADLINE_MS },
    );
    const names = [];
    stream.on("data", (response) => {
      if (response.errorResponse) reject(new Error(JSON.stringify(response.errorResponse)));
      for (const service of response.listServicesResponse?.service ?? []) names.push(service.name);
    });
    stream.on("error", (err) => reject(new Error(`${err.code} ${err.details}`)));
    stream.on("end", () => resolve(names));
    stream.write(ReflectionRequest.create({ listServices: "" }));
    stream.end();
  });
}

const NO_CODE = ["COMMAND-Rsj8c", "Code not found"];
const state = {};
try {
  await step("no authorization: 16 auth header missing, no details", () =>
    fails(
      "getMyPhone",
      {},
      metadata({ auth: false }),
      grpc.status.UNAUTHENTICATED,
      "auth header missing",
    ),
  );
  await step("a token that is not one: 16 Errors.Token.Invalid (AUTH-7fs1e)", () =>
    fails(
      "getMyPhone",
      {},
      metadata({ auth: "Bearer not-a-token" }),
      grpc.status.UNAUTHENTICATED,
      "Errors.Token.Invalid (AUTH-7fs1e)",
      ["AUTH-7fs1e", "Errors.Token.Invalid"],
    ),
  );
  await step("Get without a phone: empty phone, resourceOwner", async () => {
    const r = await ok("getMyPhone", {});
    eq(r.phone, { phone: "", isPhoneVerified: false }, "phone");
    eq(r.details.resourceOwner, ORG, "resourceOwner");
  });
  await step("Verify without a phone: 5 Code not found (COMMAND-Rsj8c)", () =>
    fails(
      "verifyMyPhone",
      { code: "X" },
      metadata(),
      grpc.status.NOT_FOUND,
      "Code not found (COMMAND-Rsj8c)",
      NO_CODE,
    ),
  );
  await step("Resend without a phone: 5 Phone not found (COMMAND-2b7Hf)", () =>
    fails(
      "resendMyPhoneVerification",
      {},
      metadata(),
      grpc.status.NOT_FOUND,
      "Phone not found (COMMAND-2b7Hf)",
      ["COMMAND-2b7Hf", "Phone not found"],
    ),
  );
  await step("Remove without a phone: 5 Phone not found (COMMAND-p6rsc)", () =>
    fails(
      "removeMyPhone",
      {},
      metadata(),
      grpc.status.NOT_FOUND,
      "Phone not found (COMMAND-p6rsc)",
      ["COMMAND-p6rsc", "Phone not found"],
    ),
  );
  await step('Set "0795550101": 3 prefix "+" message, no details', () =>
    fails(
      "setMyPhone",
      { phone: "0795550101" },
      metadata(),
      grpc.status.INVALID_ARGUMENT,
      'invalid SetMyPhoneRequest.Phone: value does not have prefix "+"',
    ),
  );
  await step(`Set "${INPUT_PHONE}": details`, async () => {
    state.seen = smsCodesTo(E164).length;
    const r = await ok("setMyPhone", { phone: INPUT_PHONE });
    state.seq = checkWriteDetails(r.details, "Set");
  });
  await step(`the SMS to ${E164} carries a code`, async () => {
    state.code = await newCode(E164, state.seen);
    assert(/^[A-Z0-9]{6}$/.test(state.code), `code ${state.code}`);
  });
  await step("Set the same number again: 9 Phone not changed (COMMAND-wF94r)", () =>
    fails(
      "setMyPhone",
      { phone: E164 },
      metadata(),
      grpc.status.FAILED_PRECONDITION,
      "Phone not changed (COMMAND-wF94r)",
      ["COMMAND-wF94r", "Phone not changed"],
    ),
  );
  await step("Verify with a wrong code: 3 Code is invalid (COMMAND-sM0cs)", () => {
    const wrong = state.code.slice(0, -1) + (state.code.endsWith("A") ? "B" : "A");
    return fails(
      "verifyMyPhone",
      { code: wrong },
      metadata(),
      grpc.status.INVALID_ARGUMENT,
      "Code is invalid (COMMAND-sM0cs)",
      ["COMMAND-sM0cs", "Code is invalid"],
    );
  });
  await step("Verify with the code from the SMS: details", async () => {
    const r = await ok("verifyMyPhone", { code: state.code });
    const seq = checkWriteDetails(r.details, "Verify");
    assert(seq > state.seq, `sequence ${seq} not after ${state.seq}`);
    state.seq = seq;
  });
  await step(`Get: phone ${E164}, isPhoneVerified true`, async () => {
    const r = await ok("getMyPhone", {});
    eq(r.phone, { phone: E164, isPhoneVerified: true }, "phone");
    eq(r.details.sequence, String(state.seq), "sequence");
    eq(r.details.resourceOwner, ORG, "resourceOwner");
    assert(r.details.creationDate && r.details.changeDate, "creationDate and changeDate");
  });
  await step("Resend once verified: 9 Phone already verified (COMMAND-2M9sf)", () =>
    fails(
      "resendMyPhoneVerification",
      {},
      metadata(),
      grpc.status.FAILED_PRECONDITION,
      "Phone already verified (COMMAND-2M9sf)",
      ["COMMAND-2M9sf", "Phone already verified"],
    ),
  );
  await step("Verify once verified: 5 Code not found (COMMAND-Rsj8c)", () =>
    fails(
      "verifyMyPhone",
      { code: state.code },
      metadata(),
      grpc.status.NOT_FOUND,
      "Code not found (COMMAND-Rsj8c)",
      NO_CODE,
    ),
  );
  await step("Remove: details", async () => {
    const r = await ok("removeMyPhone", {});
    const seq = checkWriteDetails(r.details, "Remove");
    assert(seq > state.seq, `sequence ${seq} not after ${state.seq}`);
  });
  await step("Get after Remove: empty phone", async () => {
    const r = await ok("getMyPhone", {});
    eq(r.phone, { phone: "", isPhoneVerified: false }, "phone");
  });
  await step("another AuthService method: 12 UNIMPLEMENTED", async () => {
    const { error } = await new Promise((resolve) => {
      client.makeUnaryRequest(
        "/zitadel.auth.v1.AuthService/GetMyUser",
        () => Buffer.alloc(0),
        (buf) => buf,
        {},
        metadata(),
        { deadline: Date.now() + DEADLINE_MS },
        (err, res) => resolve({ error: err, response: res }),
      );
    });
    assert(error, "GetMyUser succeeded");
    eq(error.code, grpc.status.UNIMPLEMENTED, "code");
  });
  for (const version of ["v1", "v1alpha"]) {
    await step(`reflection ${version} lists AuthService and Health`, async () => {
      const names = await listServices(version);
      for (const name of ["zitadel.auth.v1.AuthService", "grpc.health.v1.Health"]) {
        assert(names.includes(name), `${name} not in ${JSON.stringify(names)}`);
      }
    });
  }
} finally {
  client.close();
}
finish("grpc_js");
