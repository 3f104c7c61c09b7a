//! Per-model capabilities through the SDK: forced tool choice, Claude's text before a tool
//! call, service tiers, latency-optimized inference, prompt routers and the cache TTLs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, CachePointBlock, CachePointType, CacheTtl, ContentBlock,
    ConverseStreamOutput as Event, PerformanceConfigLatency, PerformanceConfiguration, ServiceTier,
    ServiceTierType, SpecificToolChoice, SystemContentBlock, ToolChoice,
};
use common::*;

fn any() -> Option<ToolChoice> {
    Some(ToolChoice::Any(AnyToolChoice::builder().build()))
}

fn named() -> Option<ToolChoice> {
    Some(ToolChoice::Tool(
        SpecificToolChoice::builder()
            .name("get_weather")
            .build()
            .unwrap(),
    ))
}

#[tokio::test]
async fn forced_tool_choice_is_refused_where_the_model_lacks_it() {
    let emu = emulator().await;
    let c = client(&emu);
    for (choice, member) in [(any(), "any"), (named(), "tool")] {
        let err = c
            .converse()
            .model_id(LLAMA)
            .messages(user("Weather in Oslo?"))
            .tool_config(weather_tool(choice.clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            validation_message(err),
            format!(
                "This model doesn't support the toolConfig.toolChoice.{member} field. Remove toolConfig.toolChoice.{member} and try again."
            )
        );
        // Models with forced choice take it.
        for model in [HAIKU, MISTRAL, NOVA] {
            let out = c
                .converse()
                .model_id(model)
                .messages(user("Weather in Oslo?"))
                .tool_config(weather_tool(choice.clone()))
                .send()
                .await
                .unwrap();
            assert_eq!(out.stop_reason().as_str(), "tool_use", "{model}");
        }
    }
    // Auto stays open to Llama.
    let out = c
        .converse()
        .model_id(LLAMA)
        .messages(user("Call get_weather for Oslo"))
        .tool_config(weather_tool(None))
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason().as_str(), "tool_use");
}

#[tokio::test]
async fn claude_says_which_tool_it_uses_before_calling_it() {
    let emu = emulator().await;
    let c = client(&emu);
    let ask = |model: &'static str, choice: Option<ToolChoice>| {
        c.converse()
            .model_id(model)
            .messages(user("Please call get_weather for Oslo"))
            .tool_config(weather_tool(choice))
    };
    let out = ask(HAIKU, None).send().await.unwrap();
    let blocks = content(&out);
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        blocks[0].as_text().unwrap(),
        "I'll use the get_weather tool."
    );
    assert_eq!(blocks[1].as_tool_use().unwrap().name(), "get_weather");
    // A forced choice goes straight to the tool; other providers never preface.
    let forced = ask(HAIKU, any()).send().await.unwrap();
    assert!(content(&forced)[0].is_tool_use());
    let nova = ask(NOVA, None).send().await.unwrap();
    assert!(content(&nova)[0].is_tool_use());

    let streamed = events(
        c.converse_stream()
            .model_id(HAIKU)
            .messages(user("Please call get_weather for Oslo"))
            .tool_config(weather_tool(None))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(streamed_text(&streamed), "I'll use the get_weather tool.");
    let mut text_index = None;
    let mut tool_start = None;
    let mut stops = Vec::new();
    for event in &streamed {
        match event {
            Event::ContentBlockDelta(d) if d.delta().unwrap().is_text() => {
                text_index = Some(d.content_block_index())
            }
            Event::ContentBlockStart(s) => tool_start = Some(s.content_block_index()),
            Event::ContentBlockStop(s) => stops.push(s.content_block_index()),
            _ => {}
        }
    }
    assert_eq!(text_index, Some(0));
    assert_eq!(tool_start, Some(1));
    assert_eq!(stops, [0, 1]);
}

#[tokio::test]
async fn service_tier_is_checked_and_echoed() {
    let emu = emulator().await;
    let c = client(&emu);
    let tier = |t: ServiceTierType| ServiceTier::builder().r#type(t).build().unwrap();
    let out = c
        .converse()
        .model_id(NOVA)
        .messages(user("hi"))
        .service_tier(tier(ServiceTierType::Flex))
        .send()
        .await
        .unwrap();
    assert_eq!(out.service_tier().unwrap().r#type().as_str(), "flex");
    let plain = c
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.service_tier().unwrap().r#type().as_str(), "default");
    let err = c
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .service_tier(tier(ServiceTierType::Priority))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        validation_message(err),
        format!("The provided service tier priority is not supported for model {HAIKU}.")
    );
    let streamed = events(
        c.converse_stream()
            .model_id(NOVA_MICRO)
            .messages(user("hi"))
            .service_tier(tier(ServiceTierType::Priority))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let Some(Event::Metadata(metadata)) = streamed.last() else {
        panic!("no metadata event")
    };
    assert_eq!(
        metadata.service_tier().unwrap().r#type().as_str(),
        "priority"
    );
}

#[tokio::test]
async fn performance_config_is_checked_and_echoed() {
    let emu = emulator().await;
    let c = client(&emu);
    let optimized = PerformanceConfiguration::builder()
        .latency(PerformanceConfigLatency::Optimized)
        .build();
    for model in [NOVA_PRO, HAIKU] {
        let out = c
            .converse()
            .model_id(model)
            .messages(user("hi"))
            .performance_config(optimized.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.performance_config().unwrap().latency().as_str(),
            "optimized"
        );
    }
    let err = c
        .converse()
        .model_id(SONNET_37)
        .messages(user("hi"))
        .performance_config(optimized.clone())
        .send()
        .await
        .unwrap_err();
    assert!(validation_message(err).contains("latency-optimized"));
    // Standard latency is fine anywhere; no performanceConfig, no echo.
    let standard = PerformanceConfiguration::builder()
        .latency(PerformanceConfigLatency::Standard)
        .build();
    let out = c
        .converse()
        .model_id(SONNET_37)
        .messages(user("hi"))
        .performance_config(standard)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.performance_config().unwrap().latency().as_str(),
        "standard"
    );
    let out = c
        .converse()
        .model_id(SONNET_37)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert!(out.performance_config().is_none());
    let streamed = events(
        c.converse_stream()
            .model_id(NOVA_PRO)
            .messages(user("hi"))
            .performance_config(optimized)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let Some(Event::Metadata(metadata)) = streamed.last() else {
        panic!("no metadata event")
    };
    assert_eq!(
        metadata.performance_config().unwrap().latency().as_str(),
        "optimized"
    );
}

#[tokio::test]
async fn prompt_router_picks_a_model_and_reports_it() {
    let emu = emulator().await;
    let c = client(&emu);
    let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    let short = c
        .converse()
        .model_id(router)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        short
            .trace()
            .unwrap()
            .prompt_router()
            .unwrap()
            .invoked_model_id(),
        Some(
            format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{HAIKU}").as_str()
        )
    );
    let long_text = "Explain this in detail please. ".repeat(100);
    let long = c
        .converse()
        .model_id(router)
        .messages(user(&long_text))
        .send()
        .await
        .unwrap();
    let invoked = long
        .trace()
        .unwrap()
        .prompt_router()
        .unwrap()
        .invoked_model_id()
        .unwrap();
    assert!(invoked.ends_with(&format!("/us.{SONNET_35}")), "{invoked}");
    // Usage follows the chosen model: the same prompt sent to it directly costs the same.
    let direct = c
        .converse()
        .model_id(SONNET_35)
        .messages(user(&long_text))
        .send()
        .await
        .unwrap();
    assert_eq!(
        long.usage().unwrap().input_tokens(),
        direct.usage().unwrap().input_tokens()
    );
    assert!(emu.state().calls(Some("Converse"), Some(SONNET_35)) >= 2);

    let streamed = events(
        c.converse_stream()
            .model_id(router)
            .messages(user("hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let Some(Event::Metadata(metadata)) = streamed.last() else {
        panic!("no metadata event")
    };
    let invoked = metadata
        .trace()
        .unwrap()
        .prompt_router()
        .unwrap()
        .invoked_model_id()
        .unwrap();
    assert!(invoked.ends_with(HAIKU));

    // A short prompt the first model cannot take (an image: Claude 3.5 Haiku is text-only)
    // goes to the model that can.
    let png = aws_sdk_bedrockruntime::types::ImageBlock::builder()
        .format(aws_sdk_bedrockruntime::types::ImageFormat::Png)
        .source(aws_sdk_bedrockruntime::types::ImageSource::Bytes(
            aws_sdk_bedrockruntime::primitives::Blob::new(b"\x89PNG\r\n\x1a\n0000".to_vec()),
        ))
        .build()
        .unwrap();
    let seen = c
        .converse()
        .model_id(router)
        .messages(user_blocks(vec![
            ContentBlock::Image(png),
            ContentBlock::Text("What is this?".into()),
        ]))
        .send()
        .await
        .unwrap();
    let invoked = seen
        .trace()
        .unwrap()
        .prompt_router()
        .unwrap()
        .invoked_model_id()
        .unwrap();
    assert!(invoked.ends_with(SONNET_35), "{invoked}");

    let err = c
        .converse()
        .model_id("arn:aws:bedrock:us-east-1:123456789012:prompt-router/missing")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
}

fn cache_point(ttl: Option<CacheTtl>) -> SystemContentBlock {
    SystemContentBlock::CachePoint(
        CachePointBlock::builder()
            .r#type(CachePointType::Default)
            .set_ttl(ttl)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn cache_details_report_the_checkpoint_ttl() {
    let emu = emulator().await;
    let c = client(&emu);
    let long_system = "You are a careful assistant. ".repeat(400);
    let ask = |model: &'static str, ttl: Option<CacheTtl>| {
        c.converse()
            .model_id(model)
            .system(SystemContentBlock::Text(long_system.clone()))
            .system(cache_point(ttl))
            .messages(user("hi"))
            .send()
    };
    let first = ask(SONNET_4, Some(CacheTtl::OneHour)).await.unwrap();
    let usage = first.usage().unwrap();
    let details = usage.cache_details();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0].ttl().as_str(), "1h");
    assert_eq!(
        Some(details[0].input_tokens()),
        usage.cache_write_input_tokens()
    );
    // The read reports no write details.
    let second = ask(SONNET_4, Some(CacheTtl::OneHour)).await.unwrap();
    assert!(second.usage().unwrap().cache_details().is_empty());
    assert_eq!(
        second.usage().unwrap().cache_read_input_tokens(),
        usage.cache_write_input_tokens()
    );
    // No ttl: five minutes.
    let default = ask(HAIKU, None).await.unwrap();
    assert_eq!(
        default.usage().unwrap().cache_details()[0].ttl().as_str(),
        "5m"
    );
    // One hour needs Claude 3.7 or later.
    let err = ask(HAIKU, Some(CacheTtl::OneHour)).await.unwrap_err();
    assert!(validation_message(err).contains("1h"));
}

#[tokio::test]
async fn one_hour_cache_entries_outlive_the_five_minute_lifetime() {
    let mut config = bedrock_emulator::EmulatorConfig::builtin();
    // Five-minute entries expire at once here; one-hour entries must not.
    config.prompt_cache_ttl_secs = 0;
    let emu = bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap();
    let c = client(&emu);
    let long_system = "You are a careful assistant. ".repeat(400);
    let ask = |ttl: Option<CacheTtl>| {
        c.converse()
            .model_id(SONNET_37)
            .system(SystemContentBlock::Text(long_system.clone()))
            .system(cache_point(ttl))
            .messages(user("hi"))
            .send()
    };
    ask(None).await.unwrap();
    let again = ask(None).await.unwrap();
    assert_eq!(again.usage().unwrap().cache_read_input_tokens(), Some(0));
    let long = "An hour-long prefix. ".repeat(400);
    let ask_long = || {
        c.converse()
            .model_id(SONNET_37)
            .system(SystemContentBlock::Text(long.clone()))
            .system(cache_point(Some(CacheTtl::OneHour)))
            .messages(user("hi"))
            .send()
    };
    ask_long().await.unwrap();
    let read = ask_long().await.unwrap();
    assert!(read.usage().unwrap().cache_read_input_tokens().unwrap() > 0);
}

#[tokio::test]
async fn model_capabilities_follow_the_model_cards() {
    let config = bedrock_emulator::EmulatorConfig::builtin();
    let m = |id: &str| config.models[id].clone();
    for id in [HAIKU_3, SONNET_35, SONNET_37, SONNET_4] {
        assert!(m(id).vision && m(id).documents, "{id}");
        assert_eq!(m(id).service_tiers, ["default"], "{id}");
    }
    assert!(!m(HAIKU).vision && !m(HAIKU).documents && m(HAIKU).latency_optimized);
    assert!(!m(HAIKU_3).citations && m(SONNET_35).citations && m(SONNET_4).citations);
    assert!(!m(SONNET_35).reasoning && m(SONNET_37).reasoning && m(SONNET_4).reasoning);
    assert!(!m(NOVA_MICRO).vision && m(NOVA).vision && m(NOVA_PRO).documents);
    assert_eq!(m(NOVA).service_tiers, ["default", "flex", "priority"]);
    assert!(m(NOVA_PRO).latency_optimized && !m(NOVA).latency_optimized);
    assert!(m(LLAMA).tool_use && !m(LLAMA).forced_tool_choice);
    assert!(m(MISTRAL).forced_tool_choice);
    assert!(!m("amazon.titan-text-express-v1").tool_use);
}

#[tokio::test]
async fn content_blocks_need_the_capability() {
    let emu = emulator().await;
    let c = client(&emu);
    let png = aws_sdk_bedrockruntime::types::ImageBlock::builder()
        .format(aws_sdk_bedrockruntime::types::ImageFormat::Png)
        .source(aws_sdk_bedrockruntime::types::ImageSource::Bytes(
            aws_sdk_bedrockruntime::primitives::Blob::new(b"\x89PNG\r\n\x1a\n0000".to_vec()),
        ))
        .build()
        .unwrap();
    for model in [HAIKU, NOVA_MICRO] {
        let err = c
            .converse()
            .model_id(model)
            .messages(user_blocks(vec![
                ContentBlock::Image(png.clone()),
                ContentBlock::Text("What is this?".into()),
            ]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            validation_message(err),
            "This model doesn't support the image content block that you provided. Try again with a supported content block."
        );
    }
}
