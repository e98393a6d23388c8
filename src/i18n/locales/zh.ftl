# phoneproof in Chinese (Simplified): ZITADEL's own texts for this language.
# Message ids are ZITADEL's i18n keys with `-` for `.` (a Fluent id cannot hold a dot).

## Errors: the text of each catalog row ZITADEL translates

Errors-User-Phone-Invalid = 手机号码无效
Errors-User-Phone-NotChanged = 电话号码没有改变
Errors-User-Code-Invalid = 代码无效
Errors-User-Code-NotFound = 验证码不存在
Errors-User-Phone-NotFound = 手机号码未找到
Errors-User-Phone-AlreadyVerified = 手机号码已经验证

## The verification SMS: ZITADEL's VerifyPhone message. The SMS body is Text;
## the HTTP provider gets all six as templateData.

VerifyPhone-Title = ZITADEL - 验证手机号码
VerifyPhone-PreHeader = 验证手机号码
VerifyPhone-Subject = 验证手机号码
VerifyPhone-Greeting = 你好 { $displayName },
VerifyPhone-Text = 您的用户中添加了一个新的手机号码，请使用以下验证码进行验证 { $code }
VerifyPhone-ButtonText = 验证手机号码
