# phoneproof in Russian: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Телефон недействителен
Errors-User-Phone-NotChanged = Телефон не менялся
Errors-User-Code-Invalid = Код недействителен
Errors-User-Code-NotFound = Код не найден
Errors-User-Phone-NotFound = Телефон не найден
Errors-User-Phone-AlreadyVerified = Телефон уже подтверждён

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Подтверждение телефона
VerifyPhone-PreHeader = Подтверждение телефона
VerifyPhone-Subject = Подтверждение телефона
VerifyPhone-Greeting = Здравствуйте { $displayName },
VerifyPhone-Text = Добавлен новый номер телефона. Пожалуйста, используйте следующий код, чтобы подтвердить его. Код { $code }
VerifyPhone-ButtonText = Подтвердить телефон
