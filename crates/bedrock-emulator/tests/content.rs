//! Image and document content blocks through the SDK: Bedrock's checks of them, documents'
//! text under guardrails, and citations in Converse, ConverseStream and InvokeModel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    CitationLocation, CitationsConfig, ContentBlock, ConverseStreamOutput as Event, DocumentBlock,
    DocumentContentBlock, DocumentFormat, DocumentSource, GuardrailConfiguration, ImageBlock,
    ImageFormat, ImageSource, S3Location, ToolResultBlock, ToolResultContentBlock, ToolUseBlock,
};
use common::*;
use serde_json::{Value, json};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'];

fn image(format: ImageFormat, bytes: &[u8]) -> ContentBlock {
    ContentBlock::Image(
        ImageBlock::builder()
            .format(format)
            .source(ImageSource::Bytes(Blob::new(bytes.to_vec())))
            .build()
            .unwrap(),
    )
}

fn document(
    name: &str,
    format: DocumentFormat,
    source: DocumentSource,
    cite: bool,
) -> ContentBlock {
    let mut builder = DocumentBlock::builder()
        .name(name)
        .format(format)
        .source(source);
    if cite {
        builder = builder.citations(CitationsConfig::builder().enabled(true).build().unwrap());
    }
    ContentBlock::Document(builder.build().unwrap())
}

fn text_doc(name: &str, text: &str, cite: bool) -> ContentBlock {
    document(
        name,
        DocumentFormat::Txt,
        DocumentSource::Text(text.into()),
        cite,
    )
}

fn ask(blocks: Vec<ContentBlock>) -> aws_sdk_bedrockruntime::types::Message {
    let mut blocks = blocks;
    blocks.push(ContentBlock::Text("What does this say?".into()));
    user_blocks(blocks)
}

#[tokio::test]
async fn images_are_checked_as_bedrock_does() {
    let emu = emulator().await;
    let c = client(&emu);
    let send = |model: &'static str, blocks: Vec<ContentBlock>| {
        c.converse().model_id(model).messages(ask(blocks)).send()
    };
    let plain = send(HAIKU_3, vec![]).await.unwrap();
    let with_image = send(HAIKU_3, vec![image(ImageFormat::Png, PNG)])
        .await
        .unwrap();
    assert_eq!(
        with_image.usage().unwrap().input_tokens() - plain.usage().unwrap().input_tokens(),
        1600
    );
    send(NOVA, vec![image(ImageFormat::Jpeg, JPEG)])
        .await
        .unwrap();

    let message = |e| validation_message(e);
    let m = message(
        send(HAIKU_3, vec![image(ImageFormat::Png, JPEG)])
            .await
            .unwrap_err(),
    );
    assert!(m.contains("does not match the format png"), "{m}");
    let m = message(
        send(
            HAIKU_3,
            vec![image(ImageFormat::Gif, b"not an image at all")],
        )
        .await
        .unwrap_err(),
    );
    assert!(m.contains("not a valid gif image"), "{m}");
    let m = message(
        send(HAIKU_3, vec![image(ImageFormat::from("bmp"), PNG)])
            .await
            .unwrap_err(),
    );
    assert!(m.contains("[png, jpeg, gif, webp]"), "{m}");
    let mut big = PNG.to_vec();
    big.resize(3_932_161, 0);
    let m = message(
        send(HAIKU_3, vec![image(ImageFormat::Png, &big)])
            .await
            .unwrap_err(),
    );
    assert!(m.contains("3.75 MB"), "{m}");
    let m = message(
        send(HAIKU_3, vec![image(ImageFormat::Png, PNG); 21])
            .await
            .unwrap_err(),
    );
    assert!(m.contains("maximum of 20"), "{m}");
    send(HAIKU_3, vec![image(ImageFormat::Png, PNG); 20])
        .await
        .unwrap();
    let s3 = ContentBlock::Image(
        ImageBlock::builder()
            .format(ImageFormat::Png)
            .source(ImageSource::S3Location(
                S3Location::builder()
                    .uri("s3://bucket/cat.png")
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap(),
    );
    let m = message(send(NOVA, vec![s3]).await.unwrap_err());
    assert!(m.contains("S3"), "{m}");
    // Images are for user messages only.
    let err = c
        .converse()
        .model_id(HAIKU_3)
        .messages(user("hi"))
        .messages(assistant_blocks(vec![image(ImageFormat::Png, PNG)]))
        .messages(user("and?"))
        .send()
        .await
        .unwrap_err();
    assert!(message(err).contains("assistant message"));
}

#[tokio::test]
async fn images_in_tool_results_are_checked_too() {
    let emu = emulator().await;
    let c = client(&emu);
    let call = ContentBlock::ToolUse(
        ToolUseBlock::builder()
            .tool_use_id("t1")
            .name("get_weather")
            .input(to_document(&json!({"city": "Oslo"})))
            .build()
            .unwrap(),
    );
    let result = |bytes: &[u8]| {
        ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id("t1")
                .content(ToolResultContentBlock::Image(
                    ImageBlock::builder()
                        .format(ImageFormat::Png)
                        .source(ImageSource::Bytes(Blob::new(bytes.to_vec())))
                        .build()
                        .unwrap(),
                ))
                .build()
                .unwrap(),
        )
    };
    let send = |model: &'static str, bytes: &'static [u8]| {
        c.converse()
            .model_id(model)
            .messages(user("Weather?"))
            .messages(assistant_blocks(vec![call.clone()]))
            .messages(user_blocks(vec![result(bytes)]))
            .tool_config(weather_tool(None))
            .send()
    };
    send(NOVA, PNG).await.unwrap();
    let m = validation_message(send(NOVA, JPEG).await.unwrap_err());
    assert!(
        m.contains("messages.2.content.0.toolResult.content.0"),
        "{m}"
    );
    assert!(validation_message(send(NOVA_MICRO, PNG).await.unwrap_err()).contains("image"));
}

#[tokio::test]
async fn documents_are_checked_as_bedrock_does() {
    let emu = emulator().await;
    let c = client(&emu);
    let send = |model: &'static str, blocks: Vec<ContentBlock>| {
        c.converse().model_id(model).messages(ask(blocks)).send()
    };
    let plain = send(SONNET_35, vec![]).await.unwrap();
    let text = "Quarterly revenue grew. ".repeat(40);
    let with_doc = send(
        SONNET_35,
        vec![text_doc("Q3 report (final) [v2]", &text, false)],
    )
    .await
    .unwrap();
    // Text documents cost their text (about four characters a token) and their name.
    let extra = with_doc.usage().unwrap().input_tokens() - plain.usage().unwrap().input_tokens();
    assert!((240..260).contains(&extra), "{extra}");
    let pdf = b"%PDF-1.4\nBT (Hello) Tj ET\n%%EOF".to_vec();
    send(
        NOVA,
        vec![document(
            "scan",
            DocumentFormat::Pdf,
            DocumentSource::Bytes(Blob::new(pdf)),
            false,
        )],
    )
    .await
    .unwrap();

    let rule = "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, parentheses, and square brackets. The name can't contain more than one consecutive whitespace character.";
    for bad in ["report.txt", "two  spaces", "under_score"] {
        let err = send(SONNET_35, vec![text_doc(bad, "x", false)])
            .await
            .unwrap_err();
        assert_eq!(validation_message(err), rule, "{bad}");
    }
    let err = send(SONNET_35, vec![text_doc(&"a".repeat(201), "x", false)])
        .await
        .unwrap_err();
    assert!(validation_message(err).contains("less than or equal to 200"));
    let six: Vec<ContentBlock> = (0..6)
        .map(|i| text_doc(&format!("doc {i}"), "x", false))
        .collect();
    let err = send(SONNET_35, six).await.unwrap_err();
    assert!(validation_message(err).contains("maximum of 5"));
    let not_pdf = document(
        "fake",
        DocumentFormat::Pdf,
        DocumentSource::Bytes(Blob::new(b"hello".to_vec())),
        false,
    );
    let err = send(SONNET_35, vec![not_pdf]).await.unwrap_err();
    assert!(validation_message(err).contains("not a PDF"));
    let huge = document(
        "huge",
        DocumentFormat::Txt,
        DocumentSource::Bytes(Blob::new(vec![b'a'; 4_718_593])),
        false,
    );
    let err = send(SONNET_35, vec![huge]).await.unwrap_err();
    assert!(validation_message(err).contains("4.5 MB"));
    let err = send(HAIKU, vec![text_doc("notes", "x", false)])
        .await
        .unwrap_err();
    assert_eq!(
        validation_message(err),
        "This model doesn't support the document content block that you provided. Try again with a supported content block."
    );
    let err = c
        .converse()
        .model_id(SONNET_35)
        .messages(user("hi"))
        .messages(assistant_blocks(vec![text_doc("notes", "x", false)]))
        .messages(user("and?"))
        .send()
        .await
        .unwrap_err();
    assert!(validation_message(err).contains("assistant message"));
}

#[tokio::test]
async fn document_text_reaches_the_guardrail() {
    let emu = emulator().await;
    let c = client(&emu);
    let guard = GuardrailConfiguration::builder()
        .guardrail_identifier("quarrydefault")
        .guardrail_version("DRAFT")
        .build();
    let send = |text: &str| {
        c.converse()
            .model_id(SONNET_35)
            .messages(ask(vec![text_doc("memo", text, false)]))
            .guardrail_config(guard.clone())
            .send()
    };
    let blocked = send("Status of Confidential Project X: on track.")
        .await
        .unwrap();
    assert_eq!(blocked.stop_reason().as_str(), "guardrail_intervened");
    assert!(
        content(&blocked)[0]
            .as_text()
            .unwrap()
            .contains("cannot answer")
    );
    let fine = send("Status: on track.").await.unwrap();
    assert_eq!(fine.stop_reason().as_str(), "end_turn");
}

/// The text of a document at `[start, end)`, in characters.
fn chars(text: &str, start: i32, end: i32) -> String {
    text.chars()
        .skip(start as usize)
        .take((end - start) as usize)
        .collect()
}

#[tokio::test]
async fn citations_quote_the_document_in_converse_and_stream() {
    let emu = emulator().await;
    let c = client(&emu);
    let text = "The launch is on Tuesday. Budget is 40k dollars!\nThe team has five people.";
    let request = || ask(vec![text_doc("launch plan", text, true)]);
    let out = c
        .converse()
        .model_id(SONNET_35)
        .messages(request())
        .send()
        .await
        .unwrap();
    let blocks = content(&out);
    let cited = blocks[0].as_citations_content().unwrap();
    let answer = cited.content()[0].as_text().unwrap().clone();
    assert!(!answer.is_empty());
    let citation = &cited.citations()[0];
    assert_eq!(citation.title(), Some("launch plan"));
    let quote = citation.source_content()[0].as_text().unwrap();
    let CitationLocation::DocumentChar(at) = citation.location().unwrap() else {
        panic!("not a documentChar location")
    };
    assert_eq!(at.document_index(), Some(0));
    assert_eq!(&chars(text, at.start().unwrap(), at.end().unwrap()), quote);
    assert!(!quote.is_empty());

    let streamed = events(
        c.converse_stream()
            .model_id(SONNET_35)
            .messages(request())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(streamed_text(&streamed), answer);
    let deltas: Vec<_> = streamed
        .iter()
        .filter_map(|e| match e {
            Event::ContentBlockDelta(d) => Some(d),
            _ => None,
        })
        .collect();
    let citation_delta = deltas
        .iter()
        .find_map(|d| d.delta().unwrap().as_citation().ok())
        .unwrap();
    assert_eq!(citation_delta.title(), Some("launch plan"));
    assert_eq!(
        citation_delta.source_content()[0].text(),
        Some(quote.as_str())
    );
    assert_eq!(citation_delta.location(), citation.location());
    // The citation closes its block: it is the last delta, at the text's index.
    assert!(deltas.last().unwrap().delta().unwrap().is_citation());
    assert!(deltas.iter().all(|d| d.content_block_index() == 0));
}

#[tokio::test]
async fn citations_point_into_pdf_pages_and_content_chunks() {
    let emu = emulator().await;
    let c = client(&emu);
    let pdf = b"%PDF-1.4\n1 0 obj\nBT /F1 12 Tf (Revenue rose in May.) Tj ET\nendobj\n%%EOF";
    let out = c
        .converse()
        .model_id(SONNET_4)
        .messages(ask(vec![
            document(
                "plain notes",
                DocumentFormat::Txt,
                DocumentSource::Bytes(Blob::new(b"Bytes are text too.".to_vec())),
                true,
            ),
            document(
                "report",
                DocumentFormat::Pdf,
                DocumentSource::Bytes(Blob::new(pdf.to_vec())),
                true,
            ),
            document(
                "chunks",
                DocumentFormat::Txt,
                DocumentSource::Content(vec![
                    DocumentContentBlock::Text("First chunk.".into()),
                    DocumentContentBlock::Text("Second chunk.".into()),
                ]),
                true,
            ),
        ]))
        .send()
        .await
        .unwrap();
    let blocks = content(&out);
    let citations = blocks[0].as_citations_content().unwrap().citations();
    assert_eq!(citations.len(), 3);
    let CitationLocation::DocumentChar(c0) = citations[0].location().unwrap() else {
        panic!("text bytes: not documentChar")
    };
    assert_eq!(
        chars(
            "Bytes are text too.",
            c0.start().unwrap(),
            c0.end().unwrap()
        ),
        citations[0].source_content()[0].as_text().unwrap().as_str()
    );
    let CitationLocation::DocumentPage(page) = citations[1].location().unwrap() else {
        panic!("pdf: not documentPage")
    };
    assert_eq!(
        (page.document_index(), page.start(), page.end()),
        (Some(1), Some(1), Some(2))
    );
    assert_eq!(
        citations[1].source_content()[0].as_text().unwrap(),
        "Revenue rose in May."
    );
    let CitationLocation::DocumentChunk(chunk) = citations[2].location().unwrap() else {
        panic!("content: not documentChunk")
    };
    let k = chunk.start().unwrap();
    assert_eq!(chunk.end(), Some(k + 1));
    assert_eq!(
        citations[2].source_content()[0].as_text().unwrap(),
        ["First chunk.", "Second chunk."][k as usize]
    );
}

#[tokio::test]
async fn citations_need_a_model_that_cites() {
    let emu = emulator().await;
    let c = client(&emu);
    let err = c
        .converse()
        .model_id(HAIKU_3)
        .messages(ask(vec![text_doc("notes", "Some text.", true)]))
        .send()
        .await
        .unwrap_err();
    assert!(validation_message(err).contains("doesn't support citations"));
    // Without citations the same document is fine, and the answer is plain text.
    let out = c
        .converse()
        .model_id(HAIKU_3)
        .messages(ask(vec![text_doc("notes", "Some text.", false)]))
        .send()
        .await
        .unwrap();
    assert!(content(&out)[0].is_text());
}

#[tokio::test]
async fn invoke_model_documents_cite_in_anthropics_shape() {
    let emu = emulator().await;
    let text = "Alpha is first. Beta is second.";
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": [
            {"type": "document", "title": "letters", "citations": {"enabled": true},
             "source": {"type": "text", "media_type": "text/plain", "data": text}},
            {"type": "text", "text": "Which is first?"}
        ]}]
    });
    let out = client(&emu)
        .invoke_model()
        .model_id(SONNET_35)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
    let citation = &answer["content"][0]["citations"][0];
    assert_eq!(citation["type"], "char_location");
    assert_eq!(citation["document_title"], "letters");
    let (start, end) = (
        citation["start_char_index"].as_i64().unwrap() as i32,
        citation["end_char_index"].as_i64().unwrap() as i32,
    );
    assert_eq!(citation["cited_text"], chars(text, start, end));
}
