"""Consumer flow through the Python client that openapi-python-client generates from
openapi/openapi.json (run.sh generates it into target/consumer/python-client and puts that
directory on PYTHONPATH).

Environment:
  PHONEPROOF_BASE_URL      http://127.0.0.1:PORT
  PHONEPROOF_TOKEN         access token of a user that has no phone yet
  PHONEPROOF_ORG           the organisation the token names
  PHONEPROOF_SMS_LOG_FILE  the server's SMS log (one JSON line per delivered SMS)

Exits 0 when every step passed, 1 otherwise; prints one line per step.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

from phoneproof_client import AuthenticatedClient
from phoneproof_client.api.user_phone import (
    auth_service_get_my_phone as get_my_phone,
)
from phoneproof_client.api.user_phone import (
    auth_service_remove_my_phone as remove_my_phone,
)
from phoneproof_client.api.user_phone import (
    auth_service_resend_my_phone_verification as resend_verification,
)
from phoneproof_client.api.user_phone import (
    auth_service_set_my_phone as set_my_phone,
)
from phoneproof_client.api.user_phone import (
    auth_service_verify_my_phone as verify_my_phone,
)
from phoneproof_client.models import (
    RpcStatus,
    V1GetMyPhoneResponse,
    V1ObjectDetails,
    V1RemoveMyPhoneResponse,
    V1ResendMyPhoneVerificationRequest,
    V1ResendMyPhoneVerificationResponse,
    V1SetMyPhoneRequest,
    V1SetMyPhoneResponse,
    V1VerifyMyPhoneRequest,
    V1VerifyMyPhoneResponse,
)
from phoneproof_client.types import UNSET

BASE_URL = os.environ["PHONEPROOF_BASE_URL"]
TOKEN = os.environ["PHONEPROOF_TOKEN"]
ORG = os.environ["PHONEPROOF_ORG"]
SMS_LOG = os.environ["PHONEPROOF_SMS_LOG_FILE"]

INPUT_PHONE = "+41 71 000 00 00"
E164 = "+41710000000"


class StepFailed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(what)


def sms_codes(to: str) -> list[str]:
    """Codes sent to `to`, oldest first."""
    try:
        with open(SMS_LOG, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    codes = []
    for line in lines:
        if not line.strip():
            continue
        sms = json.loads(line)
        if sms["to"] == to:
            codes.append(sms["text"].split()[-1])
    return codes


def wait_for_new_code(to: str, seen: int, timeout: float = 10.0) -> str:
    """The newest code sent to `to` once more than `seen` codes have been sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = sms_codes(to)
        if len(codes) > seen:
            return codes[-1]
        time.sleep(0.05)
    raise StepFailed(f"no new SMS to {to} within {timeout}s (had {seen})")


def check_write_details(details: V1ObjectDetails, what: str) -> int:
    """Set/Verify/Resend/Remove details: sequence, changeDate, resourceOwner, no creationDate."""
    check(isinstance(details, V1ObjectDetails), f"{what}: details is {details!r}")
    check(isinstance(details.sequence, str), f"{what}: sequence {details.sequence!r}")
    check(details.sequence.isdigit(), f"{what}: sequence {details.sequence!r}")
    check(
        isinstance(details.change_date, datetime.datetime)
        and details.change_date.utcoffset() == datetime.timedelta(0),
        f"{what}: changeDate {details.change_date!r}",
    )
    check(details.creation_date is UNSET, f"{what}: creationDate {details.creation_date!r}")
    check(details.resource_owner == ORG, f"{what}: resourceOwner {details.resource_owner!r}")
    return int(details.sequence)


def main() -> int:
    client = AuthenticatedClient(base_url=BASE_URL, token=TOKEN, timeout=10.0)
    passed = 0
    failed = 0

    def step(name, fn):
        nonlocal passed, failed
        try:
            fn()
        except StepFailed as exc:
            failed += 1
            print(f"FAIL {name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a crash in the generated client is a failure too
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
        else:
            passed += 1
            print(f"ok   {name}")

    state: dict = {}

    def get_without_phone():
        r = get_my_phone.sync_detailed(client=client)
        check(r.status_code == 200, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, V1GetMyPhoneResponse), f"parsed {r.parsed!r}")
        check(r.parsed.phone.phone is UNSET, f"phone {r.parsed.phone.phone!r}")
        check(r.parsed.phone.is_phone_verified is UNSET, "isPhoneVerified present")
        check(r.parsed.details.resource_owner == ORG, "resourceOwner")

    def set_phone():
        state["sms_before"] = len(sms_codes(E164))
        r = set_my_phone.sync_detailed(client=client, body=V1SetMyPhoneRequest(phone=INPUT_PHONE))
        check(r.status_code == 200, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, V1SetMyPhoneResponse), f"parsed {r.parsed!r}")
        state["seq"] = check_write_details(r.parsed.details, "Set")

    def read_code():
        state["code"] = wait_for_new_code(E164, state["sms_before"])
        check(len(state["code"]) == 6 and state["code"].isalnum(), f"code {state['code']!r}")

    def resend(body, what):
        # The new code replaces the one from Set (or from the Resend before).
        seen = len(sms_codes(E164))
        r = resend_verification.sync_detailed(client=client, body=body)
        check(r.status_code == 200, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, V1ResendMyPhoneVerificationResponse), f"parsed {r.parsed!r}")
        seq = check_write_details(r.parsed.details, what)
        check(seq > state["seq"], f"sequence {seq} not after {state['seq']}")
        state["seq"] = seq
        state["code"] = wait_for_new_code(E164, seen)

    def verify():
        body = V1VerifyMyPhoneRequest(code=state["code"])
        r = verify_my_phone.sync_detailed(client=client, body=body)
        check(r.status_code == 200, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, V1VerifyMyPhoneResponse), f"parsed {r.parsed!r}")
        seq = check_write_details(r.parsed.details, "Verify")
        check(seq > state["seq"], f"sequence {seq} not after {state['seq']}")
        state["seq"] = seq

    def get_verified():
        r = get_my_phone.sync_detailed(client=client)
        check(r.status_code == 200, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, V1GetMyPhoneResponse), f"parsed {r.parsed!r}")
        check(r.parsed.phone.phone == E164, f"phone {r.parsed.phone.phone!r}")
        check(r.parsed.phone.is_phone_verified is True, "isPhoneVerified is not True")
        d = r.parsed.details
        check(d.sequence == str(state["seq"]), f"sequence {d.sequence!r} != {state['seq']}")
        check(isinstance(d.creation_date, datetime.datetime), f"creationDate {d.creation_date!r}")
        check(isinstance(d.change_date, datetime.datetime), f"changeDate {d.change_date!r}")
        check(d.creation_date <= d.change_date, "creationDate after changeDate")
        check(d.resource_owner == ORG, f"resourceOwner {d.resource_owner!r}")

    def remove():
        r = remove_my_phone.sync_detailed(client=client)
        check(r.status_code == 200, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, V1RemoveMyPhoneResponse), f"parsed {r.parsed!r}")
        seq = check_write_details(r.parsed.details, "Remove")
        check(seq > state["seq"], f"sequence {seq} not after {state['seq']}")

    def get_removed():
        r = get_my_phone.sync_detailed(client=client)
        check(r.status_code == 200, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, V1GetMyPhoneResponse), f"parsed {r.parsed!r}")
        check(r.parsed.phone.phone is UNSET, f"phone {r.parsed.phone.phone!r}")
        check(r.parsed.phone.is_phone_verified is UNSET, "isPhoneVerified present")

    def set_without_plus():
        r = set_my_phone.sync_detailed(client=client, body=V1SetMyPhoneRequest(phone="0799999999"))
        check(r.status_code == 400, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, RpcStatus), f"parsed {r.parsed!r}")
        check(r.parsed.code == 3, f"code {r.parsed.code}")
        expected = 'invalid SetMyPhoneRequest.Phone: value does not have prefix "+"'
        check(r.parsed.message == expected, f"message {r.parsed.message!r}")
        check(r.parsed.details is UNSET, f"details {r.parsed.details!r}")

    def remove_without_phone():
        r = remove_my_phone.sync_detailed(client=client)
        check(r.status_code == 404, f"status {r.status_code}: {r.content!r}")
        check(isinstance(r.parsed, RpcStatus), f"parsed {r.parsed!r}")
        check(r.parsed.code == 5, f"code {r.parsed.code}")
        check(
            r.parsed.message == "Phone not found (COMMAND-p6rsc)", f"message {r.parsed.message!r}"
        )
        check(isinstance(r.parsed.details, list) and len(r.parsed.details) == 1, "details")
        detail = r.parsed.details[0]
        check(detail.id == "COMMAND-p6rsc", f"details[0].id {detail.id!r}")
        check(detail.message == "Phone not found", f"details[0].message {detail.message!r}")
        check(
            detail.type_ == "type.googleapis.com/zitadel.v1.ErrorDetail",
            f"details[0].@type {detail.type_!r}",
        )

    step("Get without a phone: 200, empty phone", get_without_phone)
    step(f"Set {INPUT_PHONE!r}: 200 V1SetMyPhoneResponse", set_phone)
    step(f"SMS with the code reaches {E164}", read_code)
    # Resend's body is optional (`requestBody.required: false`) and may be `{}`. Both ways of
    # calling the generated function must work: with a body, and with its default (no body).
    # With the document's Resend body schema `oneOf: [v1ResendMyPhoneVerificationRequest,
    # {type: null}]`, openapi-python-client 0.29.1 generates `body: None | Unset | ... = UNSET`
    # and passes UNSET to httpx as `json=`, so the default call raises "TypeError: Object of
    # type Unset is not JSON serializable" before anything is sent. Without the `{type: null}`
    # alternative it generates `if not isinstance(body, Unset): json = body.to_dict()`, which
    # sends no body, as the contract allows.
    step(
        "Resend with body {}: 200, new SMS",
        lambda: resend(V1ResendMyPhoneVerificationRequest(), "Resend {}"),
    )
    step(
        "Resend with the generated default (no body): 200, new SMS", lambda: resend(UNSET, "Resend")
    )
    step("Verify with the newest code: 200 V1VerifyMyPhoneResponse", verify)
    step(f"Get: phone {E164}, isPhoneVerified True", get_verified)
    step("Remove: 200 V1RemoveMyPhoneResponse", remove)
    step("Get after Remove: empty phone", get_removed)
    step("Set '0799999999': 400 RpcStatus code 3, prefix message", set_without_plus)
    step("Remove without a phone: 404 RpcStatus code 5 COMMAND-p6rsc", remove_without_phone)

    print(f"client_flow: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
