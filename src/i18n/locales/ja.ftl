# phoneproof in Japanese: ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = 無効な電話番号です
Errors-User-Phone-NotChanged = 電話番号が変更されていません
Errors-User-Code-Invalid = コードが無効
Errors-User-Code-NotFound = コードが見つかりません
Errors-User-Phone-NotFound = 電話番号が見つかりません
Errors-User-Phone-AlreadyVerified = 電話番号はすでに認証済みです

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - 電話番号の認証
VerifyPhone-PreHeader = 電話番号の認証
VerifyPhone-Subject = 電話番号の認証
VerifyPhone-Greeting = こんにちは { $displayName } さん、
VerifyPhone-Text = 新しい電話番号が追加されました。次のコードを使用してを認証してください { $code }
VerifyPhone-ButtonText = 電話番号を認証
