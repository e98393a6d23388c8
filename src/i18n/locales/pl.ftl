# phoneproof in Polish: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Numer telefonu jest nieprawidłowy
Errors-User-Phone-NotChanged = Numer telefonu nie zmieniony
Errors-User-Code-Invalid = Kod jest nieprawidłowy
Errors-User-Code-NotFound = Kod nie znaleziony
Errors-User-Phone-NotFound = Numer telefonu nie znaleziony
Errors-User-Phone-AlreadyVerified = Numer telefonu już zweryfikowany

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - Weryfikacja numeru telefonu
VerifyPhone-PreHeader = Weryfikacja numeru telefonu
VerifyPhone-Subject = Weryfikacja numeru telefonu
VerifyPhone-Greeting = Witaj { $displayName },
VerifyPhone-Text = Został dodany nowy numer telefonu. Użyj następującego kodu, aby go zweryfikować { $code }
VerifyPhone-ButtonText = Zweryfikuj numer telefonu
