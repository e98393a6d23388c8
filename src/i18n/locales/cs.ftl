# phoneproof in Czech: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Telefon je neplatný
Errors-User-Phone-NotChanged = Telefon nezměněn
Errors-User-Code-Invalid = Kód je neplatný
Errors-User-Code-NotFound = Kód nenalezen
Errors-User-Phone-NotFound = Telefon nenalezen
Errors-User-Phone-AlreadyVerified = Telefon již ověřen

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Ověření telefonu
VerifyPhone-PreHeader = Ověření telefonu
VerifyPhone-Subject = Ověření telefonu
VerifyPhone-Greeting = Dobrý den, { $displayName },
VerifyPhone-Text = Bylo přidáno nové telefonní číslo. Prosím použijte následující kód k jeho ověření { $code }
VerifyPhone-ButtonText = Ověřit telefon
