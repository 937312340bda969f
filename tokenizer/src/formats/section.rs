//! The SentencePiece facts `tokenizer.json` has no field for, carried in its post-processor.
//!
//! `tokenizers` refuses unknown top-level keys, so each piece's type, the `<unk>` surface and
//! whitespace collapsing ride in the post-processor: a `TemplateProcessing` whose templates
//! are ChatGLM's (`$A [gMASK] <sop>`, pair `$A [gMASK] <sop> $B <eop>`) and whose
//! special-token table also holds unused entries named `sentencepiece:<type>` listing the ids
//! and pieces of that type ([`ENTRY_PREFIX`]).

use tokenizers::processors::template::{SpecialToken, TemplateProcessing};

use crate::model::pipeline::SpSection;
use crate::vocab::PieceTable;

/// Prefix of the post-processor entries that carry SentencePiece facts.
pub const ENTRY_PREFIX: &str = "sentencepiece:";

/// ChatGLM's templates plus the `sentencepiece:*` entries (see the module doc).
pub fn post_processor(
    table: &PieceTable,
    section: &SpSection,
) -> std::result::Result<TemplateProcessing, String> {
    let id_of = |piece: &str| {
        table
            .pieces()
            .iter()
            .position(|p| p == piece)
            .map(|i| i as u32)
    };
    let mut tokens: Vec<SpecialToken> = Vec::new();
    let (single, pair) = match (id_of("[gMASK]"), id_of("<sop>"), id_of("<eop>")) {
        (Some(g), Some(s), Some(e)) => {
            tokens.push(("[gMASK]", g).into());
            tokens.push(("<sop>", s).into());
            tokens.push(("<eop>", e).into());
            ("$A [gMASK] <sop>", "$A [gMASK] <sop> $B:1 <eop>:1")
        }
        _ => ("$A", "$A $B:1"),
    };
    let mut names: Vec<&String> = section.piece_types.keys().collect();
    names.sort();
    for name in names {
        let ids = section.piece_types[name].clone();
        let pieces = ids
            .iter()
            .map(|&i| table.piece(i).unwrap_or_default().to_string())
            .collect();
        tokens.push(
            SpecialToken::new(format!("{ENTRY_PREFIX}{name}"), ids, pieces)
                .map_err(|e| e.to_string())?,
        );
    }
    tokens.push(
        SpecialToken::new(
            format!("{ENTRY_PREFIX}unk_surface"),
            vec![table.unk_id()],
            vec![section.unk_surface.clone()],
        )
        .map_err(|e| e.to_string())?,
    );
    if section.remove_extra_whitespaces {
        tokens.push(
            SpecialToken::new(
                format!("{ENTRY_PREFIX}remove_extra_whitespaces"),
                vec![],
                vec![],
            )
            .map_err(|e| e.to_string())?,
        );
    }
    TemplateProcessing::builder()
        .try_single(single)?
        .try_pair(pair)?
        .special_tokens(tokens)
        .build()
        .map_err(|e| e.to_string())
}
