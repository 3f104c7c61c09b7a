//! Citations: for each document that asks for them, a span the answer quotes and where it
//! is. The quote of a text document is exactly its text between the citation's `start` and
//! `end` (character offsets, end excluded), so a client can check it.

use serde_json::{Value, json};

use crate::content::{Document, DocumentText};
use crate::generate::Prng;

/// Longest quote, in characters.
const MAX_QUOTE_CHARS: usize = 300;

/// Where a quote is: Bedrock's `CitationLocation` union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Characters `[start, end)` of a text document.
    Char {
        document: usize,
        start: usize,
        end: usize,
    },
    /// Pages `[start, end)` of a PDF, counted from 1.
    Page {
        document: usize,
        start: usize,
        end: usize,
    },
    /// Chunks `[start, end)` of a document given as `content`.
    Chunk {
        document: usize,
        start: usize,
        end: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citation {
    /// The document's name.
    pub title: String,
    pub quote: String,
    pub location: Location,
}

impl Citation {
    /// Converse's `Citation` (and, the same fields, the stream's `CitationsDelta`).
    pub fn converse_json(&self) -> Value {
        let location = match self.location {
            Location::Char {
                document,
                start,
                end,
            } => {
                json!({ "documentChar": { "documentIndex": document, "start": start, "end": end } })
            }
            Location::Page {
                document,
                start,
                end,
            } => {
                json!({ "documentPage": { "documentIndex": document, "start": start, "end": end } })
            }
            Location::Chunk {
                document,
                start,
                end,
            } => {
                json!({ "documentChunk": { "documentIndex": document, "start": start, "end": end } })
            }
        };
        json!({
            "title": self.title,
            "sourceContent": [{ "text": self.quote }],
            "location": location,
        })
    }

    /// The Anthropic Messages citation (InvokeModel).
    pub fn anthropic_json(&self) -> Value {
        match self.location {
            Location::Char {
                document,
                start,
                end,
            } => json!({
                "type": "char_location", "cited_text": self.quote, "document_index": document,
                "document_title": self.title, "start_char_index": start, "end_char_index": end,
            }),
            Location::Page {
                document,
                start,
                end,
            } => json!({
                "type": "page_location", "cited_text": self.quote, "document_index": document,
                "document_title": self.title, "start_page_number": start, "end_page_number": end,
            }),
            Location::Chunk {
                document,
                start,
                end,
            } => json!({
                "type": "content_block_location", "cited_text": self.quote,
                "document_index": document, "document_title": self.title,
                "start_block_index": start, "end_block_index": end,
            }),
        }
    }
}

/// One citation per document with citations enabled, in document order.
pub fn cite(documents: &[Document], rng: &mut Prng) -> Vec<Citation> {
    documents
        .iter()
        .filter(|d| d.citations)
        .map(|d| cite_one(d, rng))
        .collect()
}

fn cite_one(document: &Document, rng: &mut Prng) -> Citation {
    let (quote, location) = match &document.text {
        DocumentText::Plain(text) => {
            let (start, end) = pick_span(text, rng);
            let quote = text.chars().skip(start).take(end - start).collect();
            (
                quote,
                Location::Char {
                    document: document.index,
                    start,
                    end,
                },
            )
        }
        DocumentText::Chunks(chunks) => {
            let filled: Vec<usize> = (0..chunks.len())
                .filter(|&i| chunks.get(i).is_some_and(|c| !c.trim().is_empty()))
                .collect();
            let k = match filled.len() {
                0 => 0,
                n => filled
                    .get((rng.next_u64() % n as u64) as usize)
                    .copied()
                    .unwrap_or(0),
            };
            (
                chunks.get(k).cloned().unwrap_or_default(),
                Location::Chunk {
                    document: document.index,
                    start: k,
                    end: k + 1,
                },
            )
        }
        DocumentText::Pdf(text) => {
            let (start, end) = pick_span(text, rng);
            (
                text.chars().skip(start).take(end - start).collect(),
                Location::Page {
                    document: document.index,
                    start: 1,
                    end: 2,
                },
            )
        }
        // Nothing readable: an empty quote at the start, which is still true of the text.
        DocumentText::Binary => (
            String::new(),
            Location::Char {
                document: document.index,
                start: 0,
                end: 0,
            },
        ),
    };
    Citation {
        title: document.name.clone(),
        quote,
        location,
    }
}

/// A sentence of `text` (ending at `.`, `!`, `?` or a line end, trimmed of whitespace, at
/// most [`MAX_QUOTE_CHARS`]) as character offsets `[start, end)`.
fn pick_span(text: &str, rng: &mut Prng) -> (usize, usize) {
    let chars: Vec<char> = text.chars().collect();
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, c) in chars.iter().enumerate() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            spans.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < chars.len() {
        spans.push((start, chars.len()));
    }
    let is_space = |i: usize| chars.get(i).is_some_and(|c| c.is_whitespace());
    let trimmed: Vec<(usize, usize)> = spans
        .into_iter()
        .map(|(mut s, mut e)| {
            while s < e && is_space(s) {
                s += 1;
            }
            while e > s && is_space(e - 1) {
                e -= 1;
            }
            (s, e)
        })
        .filter(|(s, e)| e > s)
        .collect();
    if trimmed.is_empty() {
        return (0, 0);
    }
    let pick = (rng.next_u64() % trimmed.len() as u64) as usize;
    let (s, e) = trimmed.get(pick).copied().unwrap_or((0, 0));
    (s, e.min(s + MAX_QUOTE_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_the_text_at_their_offsets() {
        let text = "Héllo there.  The sky is blue!\nCats sleep a lot";
        let doc = Document {
            index: 2,
            name: "notes".into(),
            text: DocumentText::Plain(text.into()),
            citations: true,
            bytes: text.len(),
        };
        for seed in 0..20 {
            let c = cite(std::slice::from_ref(&doc), &mut Prng::new(seed));
            let Location::Char {
                document,
                start,
                end,
            } = c[0].location
            else {
                panic!("not a char location")
            };
            assert_eq!(document, 2);
            let at: String = text.chars().skip(start).take(end - start).collect();
            assert_eq!(at, c[0].quote);
            assert!(!at.trim().is_empty() && at.trim() == at);
        }
    }
}
