"""Schemathesis hooks for the phoneproof consumer suite (run.sh loads them with
SCHEMATHESIS_HOOKS).

1. A replacement for the built-in `positive_data_acceptance` check (always on).

   The built-in check calls every 400 to a schema-valid request a failure. For this API that
   cannot hold, because some 400s depend on things a JSON schema cannot state:

   * PUT `PHONE-so0wa` "Phone is invalid" (code 3): "+0" or "+" match the documented
     `pattern: ^\\+` and length limits but do not parse as a phone number (libphonenumber).
   * PUT `COMMAND-wF94r` "Phone not changed" (code 9): the same number set twice (state).
   * POST _verify `COMMAND-sM0cs` "Code is invalid" (code 3): a well-formed wrong code.
   * POST _resend_verification `COMMAND-2M9sf` "Phone already verified" (code 9): state.

   run.sh excludes the built-in check and this stricter one takes its place: a schema-valid
   (positive) request may get any status the built-in check allows (2xx, 3xx, 401, 403, 404,
   409, 429, 5xx - a 5xx is reported by `not_a_server_error`), or a 400 only when it carries
   one of the business-rule error ids above for that very operation. Any other 400 - notably
   a request-validation error without `details` - means the document promised the request is
   valid and the server said it is not, and fails the run.

2. Stateful run only (run.sh sets PHONEPROOF_ST_STATEFUL=1).

   The stateful phase walks OpenAPI links. The committed document links each operation to the
   ones that make sense next (Set -> Verify, Resend, Get, Remove; ...); this API has no ids
   (every route works on "me"), so the links carry no parameters. For the stateful run we add,
   in memory only, a link from every operation's 200 to every other operation, so that odd
   orders are walked too (the committed file is not changed), and steer about 4 in 5 of the generated Set and Verify
   bodies so that the state machine reaches the interesting states: Set bodies use one of four
   real numbers (+41 75 000 00 00..03, so both "Phone not changed" and number changes
   happen), and Verify bodies carry the newest code the server sent to those numbers (read from the SMS log), so
   Verify can succeed and Get / Resend / Verify then see a verified phone.

3. Runs against ZITADEL's own document only (run.sh sets PHONEPROOF_ST_ZITADEL=1 for the
   schemathesis-zitadel part, with shared/zitadel/auth.swagger.json). That Swagger 2.0
   document describes ZITADEL, not us; three things in it cannot hold for ZITADEL itself, and
   only those are relaxed, each as narrowly as it can be:

   * Its top-level `consumes` / `produces` list `application/grpc` and
     `application/grpc-web+proto` beside `application/json` (the gRPC paths are elsewhere,
     /zitadel.auth.v1.AuthService/<Method>); schemathesis has no serializer for them and
     reports "Serialization not possible". The document is loaded with `application/json` only
     (in memory; the file is not changed), as the document's README says JSON tools need.
   * It declares no `+` prefix for `SetMyPhoneRequest.phone` (ZITADEL enforces it without
     publishing it), so a schema-valid phone such as "0" gets ZITADEL's validation 400
     `invalid SetMyPhoneRequest.Phone: value does not have prefix "+"` (code 3, no details).
     `positive_data_acceptance_domain` above accepts exactly that answer for Set, besides the
     business-rule ids; any other 400 to a schema-valid request still fails.
   * It documents the Resend body as required, but ZITADEL (and the contract) accept a Resend
     without a body; ZITADEL's gateway also takes a body of JSON whitespace only ("\t") as no
     body (its decoder's io.EOF is let through), and so do we. The built-in
     `negative_data_rejection` is replaced by `negative_data_rejection_zitadel`, which is the
     built-in check except for exactly those cases (a Resend whose body is absent or JSON
     whitespace only); every other schema-violating request must still be rejected.
"""

from __future__ import annotations

import json
import os

import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    is_unexpected_http_status_case,
    negative_data_rejection,
)

SET = "PUT /auth/v1/users/me/phone"
VERIFY = "POST /auth/v1/users/me/phone/_verify"
RESEND = "POST /auth/v1/users/me/phone/_resend_verification"

# operation -> error ids that are legitimate 400 answers to schema-valid data
BUSINESS_400 = {
    SET: {"PHONE-so0wa", "COMMAND-wF94r"},
    VERIFY: {"COMMAND-sM0cs"},
    RESEND: {"COMMAND-2M9sf"},
}
ALLOWED = {401, 403, 404, 409, 429}
# ZITADEL's document does not publish the `+` rule: this validation answer to a Set whose phone
# is schema-valid there is what ZITADEL itself says (code 3, no details).
PREFIX_MESSAGE = 'invalid SetMyPhoneRequest.Phone: value does not have prefix "+"'

STATEFUL = os.environ.get("PHONEPROOF_ST_STATEFUL") == "1"
ZITADEL = os.environ.get("PHONEPROOF_ST_ZITADEL") == "1"
SMS_LOG = os.environ.get("PHONEPROOF_SMS_LOG_FILE", "")
STATEFUL_PREFIX = "+4175000000"  # E.164 prefix of the numbers the stateful run sets


def _label(case):
    # Our document's paths carry /auth/v1; in ZITADEL's Swagger 2.0 document it is `basePath`.
    path = case.operation.path
    if not path.startswith("/auth/v1/"):
        path = "/auth/v1" + path
    return f"{case.method.upper()} {path}"


def _error_id(response):
    try:
        return json.loads(response.content)["details"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


@schemathesis.check
def positive_data_acceptance_domain(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if is_unexpected_http_status_case(case):
        return
    status = response.status_code
    if 200 <= status < 400 or status >= 500 or status in ALLOWED:
        return
    allowed_ids = BUSINESS_400.get(_label(case), set())
    error_id = _error_id(response) if status == 400 else None
    if error_id in allowed_ids:
        return
    if ZITADEL and status == 400 and _label(case) == SET and _is_prefix_error(response):
        return
    raise AssertionError(
        f"Schema-valid request rejected with {status} (error id {error_id!r}); "
        f"for {_label(case)} a 400 is acceptable only with one of {sorted(allowed_ids)}"
    )


def _is_prefix_error(response):
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return body == {"code": 3, "message": PREFIX_MESSAGE}


def _latest_code():
    try:
        with open(SMS_LOG, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            sms = json.loads(line)
        except ValueError:
            continue
        if str(sms.get("to", "")).startswith(STATEFUL_PREFIX):
            return sms["text"].split()[-1]
    return None


if STATEFUL:

    @schemathesis.hook
    def before_load_schema(context, raw_schema):
        operations = [
            op
            for item in raw_schema.get("paths", {}).values()
            for op in item.values()
            if isinstance(op, dict) and "operationId" in op
        ]
        for source in operations:
            links = source["responses"]["200"].setdefault("links", {})
            for target in operations:
                name = "then" + target["operationId"].split("_", 1)[1]
                links[name] = {"operationId": target["operationId"]}

    @schemathesis.hook
    def flatmap_case(context, case):
        meta = case.meta
        positive = meta is not None and meta.generation.mode.is_positive
        if not positive or not isinstance(case.body, dict):
            return st.just(case)
        label = _label(case)
        if label not in (SET, VERIFY):
            return st.just(case)

        def steer(choice):
            if choice < 0:
                return case
            if label == SET:
                case.body = {**case.body, "phone": f"+41 75 000 00 0{choice}"}
            else:
                code = _latest_code()
                if code is not None:
                    case.body = {**case.body, "code": code}
            return case

        return st.integers(-1, 3).map(steer)


if ZITADEL:

    @schemathesis.hook
    def before_load_schema(context, raw_schema):  # never registered with the stateful one
        raw_schema["consumes"] = ["application/json"]
        raw_schema["produces"] = ["application/json"]

    @schemathesis.check
    def negative_data_rejection_zitadel(ctx, response, case):
        if _label(case) == RESEND and _no_json_value(response.request.body):
            return None
        return negative_data_rejection(ctx, response, case)


def _no_json_value(body):
    """No body, or one of JSON whitespace only: ZITADEL's gateway reads either as an empty
    request (its JSON decoder ends with io.EOF, which the generated handler lets through)."""
    if body is None:
        return True
    if isinstance(body, str):
        body = body.encode()
    return body.strip(b" \t\r\n") == b""
