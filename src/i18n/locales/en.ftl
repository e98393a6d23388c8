# phoneproof in English: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Phone is invalid
Errors-User-Phone-NotChanged = Phone not changed
Errors-User-Code-Invalid = Code is invalid
Errors-User-Code-NotFound = Code not found
Errors-User-Phone-NotFound = Phone not found
Errors-User-Phone-AlreadyVerified = Phone already verified

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Verify phone
VerifyPhone-PreHeader = Verify phone
VerifyPhone-Subject = Verify phone
VerifyPhone-Greeting = Hello { $displayName },
VerifyPhone-Text = A new phone number has been added. Please use the following code to verify it { $code }
VerifyPhone-ButtonText = Verify phone
