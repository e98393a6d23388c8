# phoneproof in Spanish: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = El teléfono no es válido
Errors-User-Phone-NotChanged = El teléfono no ha cambiado
Errors-User-Code-Invalid = El código no es válido
Errors-User-Code-NotFound = Código no encontrado
Errors-User-Phone-NotFound = Teléfono no encontrado
Errors-User-Phone-AlreadyVerified = El teléfono ya se verificó

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - Verificar teléfono
VerifyPhone-PreHeader = Verificar teléfono
VerifyPhone-Subject = Verificar teléfono
VerifyPhone-Greeting = Hola { $displayName },
VerifyPhone-Text = Se ha añadido un nuevo número de teléfono. Por favor, usa el siguiente código para verificarlo { $code }
VerifyPhone-ButtonText = Verificar teléfono
