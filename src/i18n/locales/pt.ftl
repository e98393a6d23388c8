# phoneproof in Portuguese: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = O telefone é inválido
Errors-User-Phone-NotChanged = Telefone não alterado
Errors-User-Code-Invalid = Código é inválido
Errors-User-Code-NotFound = Código não encontrado
Errors-User-Phone-NotFound = Telefone não encontrado
Errors-User-Phone-AlreadyVerified = O telefone já foi verificado

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - Verificar telefone
VerifyPhone-PreHeader = Verificar telefone
VerifyPhone-Subject = Verificar telefone
VerifyPhone-Greeting = Olá { $displayName },
VerifyPhone-Text = Um novo número de telefone foi adicionado. Por favor, use o código a seguir para verificá-lo { $code }
VerifyPhone-ButtonText = Verificar telefone
