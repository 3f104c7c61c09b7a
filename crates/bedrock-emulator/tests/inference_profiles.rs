//! Application inference profiles over the wire: the AWS SDK's `bedrock` client creates,
//! reads, lists and deletes them, and the `bedrockruntime` client invokes models through
//! their ARNs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::types::{
    InferenceProfileModelSource, InferenceProfileStatus, InferenceProfileType, Tag,
};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::ContentBlock;
use serde_json::{Value, json};

mod common;

use common::{HAIKU, NOVA, client, control_client_in, emulator, events, streamed_text, user};

const ACCOUNT: &str = "123456789012";

fn foundation_arn(model: &str) -> String {
    format!("arn:aws:bedrock:us-east-1::foundation-model/{model}")
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().unwrap()
}

fn text_of(out: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput) -> String {
    out.output()
        .unwrap()
        .as_message()
        .unwrap()
        .content()
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_profile_is_created_read_listed_invoked_and_deleted() {
    let emu = emulator().await;
    let control = control_client_in(&emu, "us-east-1");
    let runtime = client(&emu);

    let created = control
        .create_inference_profile()
        .inference_profile_name("team-a chat")
        .description("Team A support bot")
        .model_source(InferenceProfileModelSource::CopyFrom(foundation_arn(HAIKU)))
        .tags(tag("team", "a"))
        .tags(tag("cost-center", "42"))
        .send()
        .await
        .unwrap();
    let arn = created.inference_profile_arn().to_owned();
    let prefix = format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/");
    let id = arn.strip_prefix(&prefix).unwrap_or_else(|| panic!("{arn}"));
    assert_eq!(id.len(), 12);
    assert!(
        id.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert_eq!(created.status(), Some(&InferenceProfileStatus::Active));

    for identifier in [arn.as_str(), id] {
        let got = control
            .get_inference_profile()
            .inference_profile_identifier(identifier)
            .send()
            .await
            .unwrap();
        assert_eq!(got.inference_profile_name(), "team-a chat");
        assert_eq!(got.description(), Some("Team A support bot"));
        assert_eq!(got.inference_profile_arn(), arn);
        assert_eq!(got.inference_profile_id(), id);
        assert_eq!(got.r#type(), &InferenceProfileType::Application);
        assert_eq!(got.status(), &InferenceProfileStatus::Active);
        assert_eq!(got.models().len(), 1);
        assert_eq!(
            got.models()[0].model_arn(),
            Some(foundation_arn(HAIKU).as_str())
        );
        assert!(got.created_at().is_some() && got.updated_at().is_some());
    }

    let listed = control
        .list_inference_profiles()
        .type_equals(InferenceProfileType::Application)
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = listed
        .inference_profile_summaries()
        .iter()
        .map(|p| p.inference_profile_arn())
        .collect();
    assert_eq!(arns, [arn.as_str()]);
    // Without a type Bedrock lists only system-defined profiles.
    let system = control.list_inference_profiles().send().await.unwrap();
    assert!(!system.inference_profile_summaries().is_empty());
    assert!(
        system
            .inference_profile_summaries()
            .iter()
            .all(|p| p.r#type() == &InferenceProfileType::SystemDefined)
    );

    let tags = control
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("team", "a"), ("cost-center", "42")]);

    // The profile answers as its model: the same answer as the model called directly.
    let through = runtime
        .converse()
        .model_id(&arn)
        .messages(user("What is a haiku?"))
        .send()
        .await
        .unwrap();
    let direct = runtime
        .converse()
        .model_id(HAIKU)
        .messages(user("What is a haiku?"))
        .send()
        .await
        .unwrap();
    assert!(!text_of(&through).is_empty());
    assert_eq!(text_of(&through), text_of(&direct));
    let recorded = emu.state().recorded(2);
    assert_eq!(recorded[0].model_id, arn, "the call names the profile ARN");
    assert_eq!(recorded[0].region, "us-east-1");
    assert_eq!(emu.state().calls_via_profile(Some("Converse"), &arn), 1);
    assert_eq!(emu.state().calls(Some("Converse"), Some(HAIKU)), 2);

    let stream = runtime
        .converse_stream()
        .model_id(&arn)
        .messages(user("What is a haiku?"))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed_text(&events(stream).await), text_of(&direct));

    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let invoked = runtime
        .invoke_model()
        .model_id(&arn)
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(invoked.body().as_ref()).unwrap();
    assert_eq!(answer["model"], HAIKU);
    let streamed = runtime
        .invoke_model_with_response_stream()
        .model_id(&arn)
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap();
    let mut stream = streamed.body;
    let mut chunks = 0;
    while let Some(_event) = stream.recv().await.unwrap() {
        chunks += 1;
    }
    assert!(chunks > 0);
    assert_eq!(emu.state().calls_via_profile(None, &arn), 4);

    control
        .delete_inference_profile()
        .inference_profile_identifier(&arn)
        .send()
        .await
        .unwrap();
    let e = control
        .get_inference_profile()
        .inference_profile_identifier(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let e = runtime
        .converse()
        .model_id(&arn)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    assert_eq!(emu.state().recorded(1)[0].model_id, arn);
    let e = control
        .delete_inference_profile()
        .inference_profile_identifier(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let e = control
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
}

#[tokio::test]
async fn duplicate_names_conflict_and_client_tokens_are_idempotent() {
    let emu = emulator().await;
    let control = control_client_in(&emu, "us-east-1");
    let create = |name: &str, token: &str| {
        control
            .create_inference_profile()
            .inference_profile_name(name)
            .client_request_token(token)
            .model_source(InferenceProfileModelSource::CopyFrom(foundation_arn(NOVA)))
    };
    let first = create("nova", "token-1").send().await.unwrap();
    let again = create("nova", "token-1").send().await.unwrap();
    assert_eq!(first.inference_profile_arn(), again.inference_profile_arn());
    let e = create("nova", "token-2")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_conflict_exception(), "{e:?}");
    assert!(e.message().unwrap().contains("nova"), "{e:?}");
    let listed = control
        .list_inference_profiles()
        .type_equals(InferenceProfileType::Application)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.inference_profile_summaries().len(), 1);
}

#[tokio::test]
async fn invalid_names_and_sources_are_validation_errors() {
    let emu = emulator().await;
    let control = control_client_in(&emu, "us-east-1");
    let create = |name: &str, copy_from: String| {
        control
            .create_inference_profile()
            .inference_profile_name(name)
            .model_source(InferenceProfileModelSource::CopyFrom(copy_from))
    };
    let e = create("bad/name!", foundation_arn(NOVA))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    assert!(
        e.message().unwrap().starts_with(
            "1 validation error detected: Value 'bad/name!' at 'inferenceProfileName' failed to satisfy constraint: Member must satisfy regular expression pattern"
        ),
        "{e:?}"
    );
    let e = create(&"n".repeat(65), foundation_arn(NOVA))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        e.message()
            .unwrap()
            .contains("Member must have length less than or equal to 64"),
        "{e:?}"
    );
    // A model ID is not an ARN.
    let e = create("plain-id", NOVA.to_owned())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    assert!(
        e.message().unwrap().contains("at 'modelSource.copyFrom'"),
        "{e:?}"
    );
    // A well-formed ARN of a model Bedrock does not have.
    let e = create("unknown", foundation_arn("acme.nothing-v1:0"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    let listed = control
        .list_inference_profiles()
        .type_equals(InferenceProfileType::Application)
        .send()
        .await
        .unwrap();
    assert!(listed.inference_profile_summaries().is_empty());

    // Copying a system-defined profile lists the regions it routes between.
    let created = create(
        "cross-region",
        format!("arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.{NOVA}"),
    )
    .send()
    .await
    .unwrap();
    let got = control
        .get_inference_profile()
        .inference_profile_identifier(created.inference_profile_arn())
        .send()
        .await
        .unwrap();
    assert_eq!(got.models().len(), 3);
    assert!(got.models().iter().all(|m| {
        m.model_arn()
            .unwrap()
            .ends_with(&format!("foundation-model/{NOVA}"))
    }));
}

#[tokio::test]
async fn system_defined_profiles_answer_get_and_list_by_pages() {
    let emu = emulator().await;
    let control = control_client_in(&emu, "us-west-2");
    let got = control
        .get_inference_profile()
        .inference_profile_identifier(format!("us.{HAIKU}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.r#type(), &InferenceProfileType::SystemDefined);
    assert_eq!(got.inference_profile_id(), format!("us.{HAIKU}"));
    assert_eq!(
        got.inference_profile_arn(),
        format!("arn:aws:bedrock:us-west-2:{ACCOUNT}:inference-profile/us.{HAIKU}")
    );
    let e = control
        .get_inference_profile()
        .inference_profile_identifier("xx.acme.nothing-v1:0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");

    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = control
            .list_inference_profiles()
            .type_equals(InferenceProfileType::SystemDefined)
            .max_results(7)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        assert!(page.inference_profile_summaries().len() <= 7);
        seen.extend(
            page.inference_profile_summaries()
                .iter()
                .map(|p| p.inference_profile_id().to_owned()),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert!(seen.len() > 7);
    assert!(seen.contains(&format!("us.{HAIKU}")));
    assert!(seen.contains(&format!("global.{HAIKU}")));
    assert!(!seen.iter().any(|id| id.starts_with("eu.")));

    let e = control
        .list_inference_profiles()
        .max_results(0)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
}
