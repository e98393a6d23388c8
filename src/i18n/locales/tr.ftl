# phoneproof in Turkish: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Telefon geçersiz
Errors-User-Phone-NotChanged = Telefon değişmedi
Errors-User-Code-Invalid = Kod geçersiz
Errors-User-Code-NotFound = Kod bulunamadı
Errors-User-Phone-NotFound = Telefon bulunamadı
Errors-User-Phone-AlreadyVerified = Telefon zaten doğrulanmış

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Telefonu doğrula
VerifyPhone-PreHeader = Telefonu doğrula
VerifyPhone-Subject = Telefonu doğrula
VerifyPhone-Greeting = Merhaba { $displayName },
VerifyPhone-Text = Yeni bir telefon numarası eklendi. Doğrulamak için lütfen şu kodu kullanın { $code }
VerifyPhone-ButtonText = Telefonu doğrula
