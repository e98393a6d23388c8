# phoneproof in Indonesian: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = Telepon tidak valid
Errors-User-Phone-NotChanged = Telepon tidak berubah
Errors-User-Code-Invalid = Kode tidak valid
Errors-User-Code-NotFound = Kode tidak ditemukan
Errors-User-Phone-NotFound = Telepon tidak ditemukan
Errors-User-Phone-AlreadyVerified = Telepon sudah diverifikasi

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = Verifikasi telepon
VerifyPhone-PreHeader = Verifikasi telepon
VerifyPhone-Subject = Verifikasi telepon
VerifyPhone-Greeting = Halo { $displayName },
VerifyPhone-Text = Nomor telepon baru telah ditambahkan. { $code }
VerifyPhone-ButtonText = Verifikasi telepon
