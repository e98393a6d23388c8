# phoneproof in Macedonian: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Телефонскиот број е невалиден
Errors-User-Phone-NotChanged = Телефонскиот број не е променет
# Errors-User-Code-Invalid: ZITADEL ships none in this language (it answers the raw key);
# phoneproof answers in English.
Errors-User-Code-NotFound = Кодот не е пронајден
Errors-User-Phone-NotFound = Телефонскиот број не е пронајден
Errors-User-Phone-AlreadyVerified = Телефонскиот број веќе е верифициран

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - Верификација на телефонски број
VerifyPhone-PreHeader = Верификација на телефонски број
VerifyPhone-Subject = Верификација на телефонски број
VerifyPhone-Greeting = Здраво { $displayName },
VerifyPhone-Text = Додаден е нов телефонски број. Ве молиме користете го следниот код за да го верифицирате. { $code }
VerifyPhone-ButtonText = Верифицирај телефонски број
