# phoneproof in Italian: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Il telefono non è valido
Errors-User-Phone-NotChanged = Telefono non cambiato
Errors-User-Code-Invalid = Il codice non è valido
Errors-User-Code-NotFound = Codice non trovato
Errors-User-Phone-NotFound = Telefono non trovato
Errors-User-Phone-AlreadyVerified = Telefono già verificato

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - Verifica il telefono
VerifyPhone-PreHeader = Verifica il telefono
VerifyPhone-Subject = Verifica il telefono
VerifyPhone-Greeting = Ciao { $displayName },
VerifyPhone-Text = È stato aggiunto un nuovo numero di telefono. Usa il seguente codice per verificarlo { $code }
VerifyPhone-ButtonText = Verifica
