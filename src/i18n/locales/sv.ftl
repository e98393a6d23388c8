# phoneproof in Swedish: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Mobilnr är ogiltig
Errors-User-Phone-NotChanged = Mobilnr ändrades inte
Errors-User-Code-Invalid = Koden är ogiltig
Errors-User-Code-NotFound = Kod hittades inte
Errors-User-Phone-NotFound = Mobilnr hittades inte
Errors-User-Phone-AlreadyVerified = Mobilnr redan verifierad

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Verifiera telefon
VerifyPhone-PreHeader = Verifiera telefon
VerifyPhone-Subject = Verifiera telefon
VerifyPhone-Greeting = Hej { $displayName },
VerifyPhone-Text = Ett nytt mobilnummer har lagts till. Använd följande kod för att verifiera det { $code }
VerifyPhone-ButtonText = Verifiera telefon
