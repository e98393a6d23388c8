# phoneproof in German: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Telefonnummer ist ungültig
Errors-User-Phone-NotChanged = Telefonnummer wurde nicht geändert
Errors-User-Code-Invalid = Code ist nicht gültig
Errors-User-Code-NotFound = Code konnte nicht gefunden werden
Errors-User-Phone-NotFound = Telefonnummer nicht gefunden
Errors-User-Phone-AlreadyVerified = Telefonnummer bereits verifiziert

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Telefonnummer verifizieren
VerifyPhone-PreHeader = Telefonnummer verifizieren
VerifyPhone-Subject = Telefonnummer verifizieren
VerifyPhone-Greeting = Hallo { $displayName },
# ZITADEL's German text holds HTML entities (&lt;br&gt;, &lt;strong&gt;); an SMS is plain text.
VerifyPhone-Text = Eine Telefonnummer wurde hinzugefügt. Bitte verifiziere diese, indem du folgenden Code eingibst (Code { $code }).
VerifyPhone-ButtonText = Telefonnummer verifizieren
