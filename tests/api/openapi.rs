//! The committed contract, the served document and the printed one are the same bytes.
use crate::helpers::*;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[tokio::test]
async fn the_generated_document_is_the_committed_one() {
    let generated = phoneproof::openapi::openapi_json();
    if generated != COMMITTED {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/openapi.generated.json");
        std::fs::write(path, &generated).unwrap();
        panic!(
            "openapi/openapi.json is out of date; the generated one is in {path} (update with `cargo run -- openapi > openapi/openapi.json`)"
        );
    }
    let app = spawn_app().await;
    let served = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "application/json");
    assert_eq!(served.text().await.unwrap(), COMMITTED);
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_phoneproof"))
        .arg("openapi")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(printed.stdout).unwrap(), COMMITTED);
    app.stop().await;
}

#[test]
fn every_operation_documents_its_contract_facts() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let ops = [
        (
            "/auth/v1/users/me/phone",
            "get",
            "AuthService_GetMyPhone",
            "Get My Phone",
        ),
        (
            "/auth/v1/users/me/phone",
            "put",
            "AuthService_SetMyPhone",
            "Set My Phone",
        ),
        (
            "/auth/v1/users/me/phone/_verify",
            "post",
            "AuthService_VerifyMyPhone",
            "Verify Phone",
        ),
        (
            "/auth/v1/users/me/phone/_resend_verification",
            "post",
            "AuthService_ResendMyPhoneVerification",
            "Resend Phone verification",
        ),
        (
            "/auth/v1/users/me/phone",
            "delete",
            "AuthService_RemoveMyPhone",
            "Remove Phone Number",
        ),
    ];
    for (p, m, id, summary) in ops {
        let op = &doc["paths"][p][m];
        assert_eq!(op["operationId"], id);
        assert_eq!(op["summary"], summary);
        assert_eq!(op["tags"], serde_json::json!(["User Phone"]));
        assert_eq!(op["security"], serde_json::json!([{"BearerAuth": []}]));
        let params = op["parameters"].as_array().expect("parameters");
        assert!(
            params.iter().any(|p| p["name"] == "Accept-Language"
                && p["in"] == "header"
                && p["required"] == false
                && p["schema"]["type"] == "string"),
            "{id} documents Accept-Language: {params:?}"
        );
        for status in ["200", "401", "500", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{id} documents {status}"
            );
        }
        for (status, resp) in op["responses"].as_object().unwrap() {
            if status != "200" {
                let c = &resp["content"]["application/json"];
                assert_eq!(
                    c["schema"]["$ref"], "#/components/schemas/rpcStatus",
                    "{id} {status}"
                );
                assert!(!c["examples"].as_object().unwrap().is_empty());
            }
        }
    }
    let seeds = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/seeds/003_590de4f3e8ebe44a.txt"
    ))
    .unwrap_or_default();
    let set_desc = doc["paths"]["/auth/v1/users/me/phone"]["put"]["description"]
        .as_str()
        .unwrap();
    if !seeds.is_empty() {
        assert!(
            seeds.contains(set_desc),
            "Set's description is the seed's, word for word"
        );
    }
    let phone = &doc["components"]["schemas"]["v1SetMyPhoneRequest"]["properties"]["phone"];
    assert_eq!(
        (phone["minLength"].as_u64(), phone["maxLength"].as_u64()),
        (Some(1), Some(50))
    );
    assert_eq!(phone["pattern"], "^\\+");
    let code = &doc["components"]["schemas"]["v1VerifyMyPhoneRequest"]["properties"]["code"];
    assert_eq!(
        (code["minLength"].as_u64(), code["maxLength"].as_u64()),
        (Some(1), Some(200))
    );
    for name in [
        "v1SetMyPhoneRequest",
        "v1SetMyPhoneResponse",
        "v1VerifyMyPhoneRequest",
        "v1VerifyMyPhoneResponse",
        "v1GetMyPhoneResponse",
        "v1ResendMyPhoneVerificationResponse",
        "v1RemoveMyPhoneResponse",
        "v1ObjectDetails",
        "v1Phone",
        "rpcStatus",
        "protobufAny",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "schema {name}"
        );
    }
}
