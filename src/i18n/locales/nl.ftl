# phoneproof in Dutch: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Telefoon is ongeldig
Errors-User-Phone-NotChanged = Telefoon niet veranderd
Errors-User-Code-Invalid = Code is ongeldig
Errors-User-Code-NotFound = Code niet gevonden
Errors-User-Phone-NotFound = Telefoon niet gevonden
Errors-User-Phone-AlreadyVerified = Telefoon is al geverifieerd

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Verifieer telefoon
VerifyPhone-PreHeader = Verifieer telefoon
VerifyPhone-Subject = Verifieer telefoon
VerifyPhone-Greeting = Hallo { $displayName },
VerifyPhone-Text = Er is een nieuw telefoonnummer toegevoegd. Gebruik de volgende code om het te verifiëren { $code }
VerifyPhone-ButtonText = Verifieer telefoon
