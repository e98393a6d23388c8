# phoneproof in French: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Le téléphone n'est pas valide
Errors-User-Phone-NotChanged = Téléphone n'a pas changé
Errors-User-Code-Invalid = Le code n'est pas valide
Errors-User-Code-NotFound = Code non trouvé
# Errors-User-Phone-NotFound: ZITADEL ships none in this language (it answers the raw key);
# phoneproof answers in English.
Errors-User-Phone-AlreadyVerified = Téléphone déjà vérifié

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - Vérifier le téléphone
VerifyPhone-PreHeader = Vérifier le téléphone
VerifyPhone-Subject = Vérifier le téléphone
VerifyPhone-Greeting = Bonjour { $displayName },
VerifyPhone-Text = Un nouveau numéro de téléphone a été ajouté. Veuillez utiliser le code suivant pour le vérifier { $code }
VerifyPhone-ButtonText = Vérifier le téléphone
