# phoneproof in Hungarian: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Érvénytelen telefon
Errors-User-Phone-NotChanged = Telefon nem lett megváltoztatva
Errors-User-Code-Invalid = A kód érvénytelen
Errors-User-Code-NotFound = A kód nem található
Errors-User-Phone-NotFound = Telefon nem található
Errors-User-Phone-AlreadyVerified = Telefon már ellenőrizve

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Telefon megerősítése
VerifyPhone-PreHeader = Telefon megerősítése
VerifyPhone-Subject = Telefonszám ellenőrzése
VerifyPhone-Greeting = Kedves { $displayName },
VerifyPhone-Text = Új telefonszám került hozzáadásra. Kérlek, használd a következő kódot az ellenőrzéshez: { $code }
VerifyPhone-ButtonText = Telefonszám ellenőrzése
