"""A Python gRPC client of phoneproof: grpcio over plaintext HTTP/2, with stubs that grpcio-tools
compiled from proto/zitadel/*.proto at test time (run.sh puts them in target/consumer/grpc-py
and that directory on PYTHONPATH), and grpcio-status to read the rich error status
(google.rpc.Status in grpc-status-details-bin, from googleapis-common-protos) with its
zitadel.v1.ErrorDetail.

Environment:
  PHONEPROOF_GRPC_TARGET   127.0.0.1:PORT
  PHONEPROOF_TOKEN         access token of a user that has no phone yet
  PHONEPROOF_ORG           the organisation the token names
  PHONEPROOF_SMS_LOG_FILE  the server's SMS log (one JSON line per delivered SMS)

Exits 0 when every step passed, 1 otherwise; prints one line per step.
"""

from __future__ import annotations

import json
import os
import sys
import time

import grpc
from grpc_status import rpc_status
from zitadel import auth_pb2, auth_pb2_grpc, message_pb2

TARGET = os.environ["PHONEPROOF_GRPC_TARGET"]
TOKEN = os.environ["PHONEPROOF_TOKEN"]
ORG = os.environ["PHONEPROOF_ORG"]
SMS_LOG = os.environ["PHONEPROOF_SMS_LOG_FILE"]

INPUT_PHONE = "+41 79 555 02 02"
E164 = "+41795550202"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
TIMEOUT = 10.0


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
    return [
        sms["text"].split()[-1]
        for sms in (json.loads(line) for line in lines if line.strip())
        if sms["to"] == to
    ]


def wait_for_new_code(to: str, seen: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = sms_codes(to)
        if len(codes) > seen:
            return codes[-1]
        time.sleep(0.05)
    raise StepFailed(f"no new SMS to {to} within {timeout}s (had {seen})")


def expect_error(
    fn,
    request,
    code: grpc.StatusCode,
    message: str,
    detail: tuple[str, str] | None,
    metadata=AUTH,
) -> None:
    """The call fails with exactly `code` and `message`; with `detail` (id, text) the rich status
    carries one zitadel.v1.ErrorDetail, without it there is no rich status at all."""
    try:
        response = fn(request, metadata=metadata, timeout=TIMEOUT)
    except grpc.RpcError as err:
        call = err
    else:
        raise StepFailed(f"succeeded: {response}")
    check(call.code() == code, f"code {call.code()}, expected {code}")
    check(call.details() == message, f"message {call.details()!r}, expected {message!r}")
    status = rpc_status.from_call(call)
    if detail is None:
        check(status is None, f"unexpected grpc-status-details-bin: {status}")
        return
    check(status is not None, "no grpc-status-details-bin")
    check(status.code == code.value[0], f"google.rpc.Status.code {status.code}")
    check(status.message == message, f"google.rpc.Status.message {status.message!r}")
    check(len(status.details) == 1, f"{len(status.details)} details")
    any_detail = status.details[0]
    check(any_detail.Is(message_pb2.ErrorDetail.DESCRIPTOR), f"type_url {any_detail.type_url!r}")
    check(
        any_detail.type_url == "type.googleapis.com/zitadel.v1.ErrorDetail",
        f"type_url {any_detail.type_url!r}",
    )
    error_detail = message_pb2.ErrorDetail()
    check(any_detail.Unpack(error_detail), "Any does not unpack into ErrorDetail")
    check(
        (error_detail.id, error_detail.message) == detail,
        f"ErrorDetail {(error_detail.id, error_detail.message)}, expected {detail}",
    )


def check_write_details(details, what: str) -> int:
    check(details.sequence > 0, f"{what}: sequence {details.sequence}")
    check(details.HasField("change_date"), f"{what}: no change_date")
    check(details.change_date.seconds > 0, f"{what}: change_date {details.change_date}")
    check(not details.HasField("creation_date"), f"{what}: creation_date is set")
    check(details.resource_owner == ORG, f"{what}: resource_owner {details.resource_owner!r}")
    return details.sequence


def main() -> int:
    passed = 0
    failed = 0

    def step(name, fn):
        nonlocal passed, failed
        try:
            fn()
        except StepFailed as exc:
            failed += 1
            print(f"FAIL {name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - an unexpected gRPC error is a failure too
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
        else:
            passed += 1
            print(f"ok   {name}")

    state: dict = {}
    with grpc.insecure_channel(TARGET) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)

        def get_without_phone():
            r = stub.GetMyPhone(auth_pb2.GetMyPhoneRequest(), metadata=AUTH, timeout=TIMEOUT)
            check(r.HasField("phone"), "no phone message")
            check(r.phone.phone == "", f"phone {r.phone.phone!r}")
            check(not r.phone.is_phone_verified, "is_phone_verified")
            check(r.details.resource_owner == ORG, f"resource_owner {r.details.resource_owner!r}")

        def set_phone():
            state["seen"] = len(sms_codes(E164))
            r = stub.SetMyPhone(
                auth_pb2.SetMyPhoneRequest(phone=INPUT_PHONE), metadata=AUTH, timeout=TIMEOUT
            )
            state["seq"] = check_write_details(r.details, "Set")
            state["code"] = wait_for_new_code(E164, state["seen"])

        def verify():
            r = stub.VerifyMyPhone(
                auth_pb2.VerifyMyPhoneRequest(code=state["code"]), metadata=AUTH, timeout=TIMEOUT
            )
            seq = check_write_details(r.details, "Verify")
            check(seq > state["seq"], f"sequence {seq} not after {state['seq']}")
            state["seq"] = seq

        def get_verified():
            r = stub.GetMyPhone(auth_pb2.GetMyPhoneRequest(), metadata=AUTH, timeout=TIMEOUT)
            check(r.phone.phone == E164, f"phone {r.phone.phone!r}")
            check(r.phone.is_phone_verified, "is_phone_verified is false")
            d = r.details
            check(d.sequence == state["seq"], f"sequence {d.sequence} != {state['seq']}")
            check(d.HasField("creation_date") and d.HasField("change_date"), "dates")
            check(
                d.creation_date.ToDatetime() <= d.change_date.ToDatetime(),
                "creation_date after change_date",
            )
            check(d.resource_owner == ORG, f"resource_owner {d.resource_owner!r}")

        step(
            "no authorization: UNAUTHENTICATED auth header missing, no rich status",
            lambda: expect_error(
                stub.GetMyPhone,
                auth_pb2.GetMyPhoneRequest(),
                grpc.StatusCode.UNAUTHENTICATED,
                "auth header missing",
                None,
                metadata=(),
            ),
        )
        step("Get without a phone: empty phone, resource_owner", get_without_phone)
        step(
            "Verify without a phone: NOT_FOUND, ErrorDetail COMMAND-Rsj8c",
            lambda: expect_error(
                stub.VerifyMyPhone,
                auth_pb2.VerifyMyPhoneRequest(code="X"),
                grpc.StatusCode.NOT_FOUND,
                "Code not found (COMMAND-Rsj8c)",
                ("COMMAND-Rsj8c", "Code not found"),
            ),
        )
        step(
            "Remove without a phone: NOT_FOUND, ErrorDetail COMMAND-p6rsc",
            lambda: expect_error(
                stub.RemoveMyPhone,
                auth_pb2.RemoveMyPhoneRequest(),
                grpc.StatusCode.NOT_FOUND,
                "Phone not found (COMMAND-p6rsc)",
                ("COMMAND-p6rsc", "Phone not found"),
            ),
        )
        step(
            "Set '0795550202': INVALID_ARGUMENT prefix message, no rich status",
            lambda: expect_error(
                stub.SetMyPhone,
                auth_pb2.SetMyPhoneRequest(phone="0795550202"),
                grpc.StatusCode.INVALID_ARGUMENT,
                'invalid SetMyPhoneRequest.Phone: value does not have prefix "+"',
                None,
            ),
        )
        step(f"Set {INPUT_PHONE!r}: details; the SMS carries a code", set_phone)
        step(
            "Set the same number again: FAILED_PRECONDITION, ErrorDetail COMMAND-wF94r",
            lambda: expect_error(
                stub.SetMyPhone,
                auth_pb2.SetMyPhoneRequest(phone=E164),
                grpc.StatusCode.FAILED_PRECONDITION,
                "Phone not changed (COMMAND-wF94r)",
                ("COMMAND-wF94r", "Phone not changed"),
            ),
        )
        step(
            "Verify with a wrong code: INVALID_ARGUMENT, ErrorDetail COMMAND-sM0cs",
            lambda: expect_error(
                stub.VerifyMyPhone,
                auth_pb2.VerifyMyPhoneRequest(code=state["code"] + "X"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "Code is invalid (COMMAND-sM0cs)",
                ("COMMAND-sM0cs", "Code is invalid"),
            ),
        )
        step("Verify with the code from the SMS: details", verify)
        step(f"Get: phone {E164}, is_phone_verified", get_verified)
        step(
            "Resend once verified: FAILED_PRECONDITION, ErrorDetail COMMAND-2M9sf",
            lambda: expect_error(
                stub.ResendMyPhoneVerification,
                auth_pb2.ResendMyPhoneVerificationRequest(),
                grpc.StatusCode.FAILED_PRECONDITION,
                "Phone already verified (COMMAND-2M9sf)",
                ("COMMAND-2M9sf", "Phone already verified"),
            ),
        )

    print(f"grpc_client: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
