# phoneproof in Korean: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = 전화번호가 잘못되었습니다
Errors-User-Phone-NotChanged = 전화번호가 변경되지 않았습니다
Errors-User-Code-Invalid = 코드가 잘못되었습니다
Errors-User-Code-NotFound = 코드를 찾을 수 없습니다
Errors-User-Phone-NotFound = 전화번호를 찾을 수 없습니다
Errors-User-Phone-AlreadyVerified = 전화번호가 이미 인증되었습니다

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = 전화번호 인증
VerifyPhone-PreHeader = 전화번호 인증
VerifyPhone-Subject = 전화번호 인증
VerifyPhone-Greeting = 안녕하세요, { $displayName }님,
VerifyPhone-Text = 새 전화번호가 추가되었습니다. 다음 코드를 사용하여 인증하세요 { $code }
VerifyPhone-ButtonText = 전화번호 인증
