# phoneproof in Bulgarian: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Телефонът е невалиден
Errors-User-Phone-NotChanged = Телефонът не е сменен
Errors-User-Code-Invalid = кодът е невалиден
Errors-User-Code-NotFound = Кодът не е намерен
Errors-User-Phone-NotFound = Телефонът не е намерен
Errors-User-Phone-AlreadyVerified = Телефонът вече е потвърден

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - Потвърдете телефона
VerifyPhone-PreHeader = Потвърдете телефона
VerifyPhone-Subject = Потвърдете телефона
VerifyPhone-Greeting = Здравейте { $displayName },
VerifyPhone-Text = Добавен е нов телефонен номер.  { $code }
VerifyPhone-ButtonText = Потвърдете телефона
