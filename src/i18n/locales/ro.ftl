# phoneproof in Romanian: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Numărul de telefon este invalid
Errors-User-Phone-NotChanged = Numărul de telefon nu a fost schimbat
Errors-User-Code-Invalid = Codul este invalid
Errors-User-Code-NotFound = Codul nu a fost găsit
Errors-User-Phone-NotFound = Numărul de telefon nu a fost găsit
Errors-User-Phone-AlreadyVerified = Numărul de telefon este deja verificat

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Verificare telefon
VerifyPhone-PreHeader = Verificare telefon
VerifyPhone-Subject = Verificare telefon
VerifyPhone-Greeting = Bună ziua, { $displayName },
VerifyPhone-Text = A fost adăugat un număr de telefon nou. Vă rugăm să folosiți următorul cod pentru a-l verifica: { $code }
VerifyPhone-ButtonText = Verificare telefon
