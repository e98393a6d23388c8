// Type-level consumer check: run.sh generates target/consumer/schema.d.ts from
// openapi/openapi.json with openapi-typescript, then type-checks this file with
// `tsc --noEmit --strict`. Nothing here runs; the file only has to compile.
import type { components, operations, paths } from "../../target/consumer/schema.js";

type Schemas = components["schemas"];
type SetMyPhoneRequest = Schemas["v1SetMyPhoneRequest"];
type GetMyPhoneResponse = Schemas["v1GetMyPhoneResponse"];
type RpcStatus = Schemas["rpcStatus"];

// The request body of PUT /auth/v1/users/me/phone is the SetMyPhoneRequest schema.
type SetBody = paths["/auth/v1/users/me/phone"]["put"]["requestBody"]["content"]["application/json"];
const setBody: SetBody = { phone: "+41 71 000 00 00" };
const setRequest: SetMyPhoneRequest = setBody;

// A Get answer as the server sends it: zero values left out, sequence a uint64 string.
type GetOk = operations["AuthService_GetMyPhone"]["responses"][200]["content"]["application/json"];
const got: GetOk = {
  details: {
    sequence: "4",
    creationDate: "2024-06-13T06:44:35.471Z",
    changeDate: "2024-06-13T06:45:01.002Z",
    resourceOwner: "69629023906488334",
  },
  phone: { phone: "+41710000000", isPhoneVerified: true },
};
const getResponse: GetMyPhoneResponse = got;
// A user without a phone: `phone` is an empty object.
const noPhone: GetMyPhoneResponse = { details: { resourceOwner: "69629023906488334" }, phone: {} };

// Error bodies are google.rpc.Status.
type SetBadRequest =
  operations["AuthService_SetMyPhone"]["responses"][400]["content"]["application/json"];
const invalid: SetBadRequest = {
  code: 3,
  message: 'invalid SetMyPhoneRequest.Phone: value does not have prefix "+"',
};
const notFound: RpcStatus = {
  code: 5,
  message: "Phone not found (COMMAND-p6rsc)",
  details: [
    {
      "@type": "type.googleapis.com/zitadel.v1.ErrorDetail",
      id: "COMMAND-p6rsc",
      message: "Phone not found",
    },
  ],
};

// Reading typed fields.
const verified: boolean | undefined = getResponse.phone.isPhoneVerified;
const firstId: string | undefined = notFound.details?.[0]?.id;
const verifyBody: Schemas["v1VerifyMyPhoneRequest"] = { code: "SLUSZN" };

// Wrong types must be rejected: the sequence is a string, not a number.
const wrong: GetMyPhoneResponse = {
  // @ts-expect-error sequence is a uint64 written as a JSON string
  details: { sequence: 4 },
  phone: {},
};
// ...and a SetMyPhoneRequest needs its `phone`.
// @ts-expect-error phone is required
const missingPhone: SetMyPhoneRequest = {};

export const values = [
  setRequest,
  getResponse,
  noPhone,
  invalid,
  notFound,
  verified,
  firstId,
  verifyBody,
  wrong,
  missingPhone,
];
