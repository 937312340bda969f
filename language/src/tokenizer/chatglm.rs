//! [`ChatGlmTokenizer`]: SentencePiece segmentation plus the ChatGLM text rules, id-exact
//! with the official `ChatGLMTokenizer` (`num_image_tokens = 0`).

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::convert::HfPipeline;
use super::error::{Result, TokenizerError};
use super::pieces::{PieceKind, PieceTable};
use super::spm::SpModel;
use super::text;

/// Ids of ChatGLM's special pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// `[MASK]`.
    pub mask: u32,
    /// `[gMASK]` (ends every prompt, before `<sop>`).
    pub gmask: u32,
    /// `<sop>`, the bos token.
    pub sop: u32,
    /// `<eop>`, the eos token (generation stops on it).
    pub eop: u32,
    /// `<pad>` (also SAT's image placeholder).
    pub pad: u32,
    /// `<unk>` (also HF's image placeholder).
    pub unk: u32,
}

/// How to decode; [`Default`] is Hugging Face `decode`'s default (keep special tokens, clean
/// up tokenization spaces), which the VisualGLM chat code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Drop `<sop>`, `<eop>`, `<unk>`, `<pad>` and `[MASK]` (HF's special-token attributes;
    /// `[gMASK]` is not one, so it stays).
    pub skip_special_tokens: bool,
    /// Apply HF `clean_up_tokenization` (`"cat ."` → `"cat."`, `"It 's"` → `"It's"`).
    pub clean_up_tokenization_spaces: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            skip_special_tokens: false,
            clean_up_tokenization_spaces: true,
        }
    }
}

impl DecodeOptions {
    /// SentencePiece + ChatGLM post-processing only (`SPTokenizer.decode`).
    pub fn raw() -> Self {
        Self {
            skip_special_tokens: false,
            clean_up_tokenization_spaces: false,
        }
    }
}

/// The ChatGLM-6B tokenizer, loaded from a SentencePiece `.model` or a converted
/// `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct ChatGlmTokenizer {
    pipeline: HfPipeline,
    specials: SpecialIds,
    source: PathBuf,
}

/// Number of pieces of the released `ice_text.model`.
const RELEASE_VOCAB: usize = 130_344;

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F        // CJK symbols and punctuation
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0xFF00..=0xFFEF      // half- and full-width forms
        | 0x20000..=0x2FA1F) // CJK extensions B.. and compatibility supplement
}

impl ChatGlmTokenizer {
    /// Loads a `.model` (SentencePiece protobuf) or `.json` (`tokenizer.json`) file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let pipeline = match ext.as_deref() {
            Some("model") => HfPipeline::from_sp(&SpModel::from_file(path)?, path)?,
            Some("json") => {
                let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                HfPipeline::from_json(&text, path)?
            }
            _ => {
                return Err(TokenizerError::UnknownFileKind {
                    path: path.to_path_buf(),
                })
            }
        };
        Self::from_pipeline(pipeline, path)
    }

    /// Loads the tokenizer of a model directory: `tokenizer.json` if present, else
    /// `ice_text.model`, else the first `*.model` file by name.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        for name in ["tokenizer.json", "ice_text.model"] {
            let p = dir.join(name);
            if p.is_file() {
                return Self::from_file(p);
            }
        }
        let entries = std::fs::read_dir(dir).map_err(|source| TokenizerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut models: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "model"))
            .collect();
        models.sort();
        match models.into_iter().next() {
            Some(p) => Self::from_file(p),
            None => Err(TokenizerError::NoTokenizerInDir {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// Loads from a `.model`/`.json` file or a model directory, whichever `path` is.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            Self::from_dir(path)
        } else {
            Self::from_file(path)
        }
    }

    fn from_pipeline(pipeline: HfPipeline, path: &Path) -> Result<Self> {
        let table = &pipeline.table;
        let find = |piece: &str| -> Result<u32> {
            table
                .pieces()
                .iter()
                .position(|p| p == piece)
                .map(|i| i as u32)
                .ok_or_else(|| TokenizerError::MissingPiece {
                    path: path.to_path_buf(),
                    piece: piece.to_string(),
                })
        };
        let specials = SpecialIds {
            mask: find("[MASK]")?,
            gmask: find("[gMASK]")?,
            sop: find("<sop>")?,
            eop: find("<eop>")?,
            pad: find("<pad>")?,
            unk: table.unk_id(),
        };
        // The text rules emit these pieces; they must be atomic (user-defined) pieces.
        let mut needed = vec![text::NEWLINE.to_string(), text::TAB.to_string()];
        needed.extend((2..=text::MAX_BLANK).map(text::blank_piece));
        for piece in needed {
            let id = find(&piece)?;
            if table.kind(id) != Some(PieceKind::UserDefined) {
                return Err(TokenizerError::Unsupported {
                    path: path.to_path_buf(),
                    what: format!("piece {piece:?} is not a user-defined piece"),
                });
            }
        }
        Ok(Self {
            pipeline,
            specials,
            source: path.to_path_buf(),
        })
    }

    /// The file this tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Token ids of `text` (ChatGLM rules, then SentencePiece with its dummy prefix), without
    /// `[gMASK]`/`<sop>` — HF `encode(text, add_special_tokens=False)`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.pipeline
            .encode(&text::preprocess(text))
            .map_err(|reason| TokenizerError::Encode {
                path: self.source.clone(),
                reason,
            })
    }

    /// [`ChatGlmTokenizer::encode`] through the full `tokenizers` pipeline instead of the lean
    /// driver: slower, same ids (kept as the reference for tests).
    pub fn encode_reference(&self, text: &str) -> Result<Vec<u32>> {
        self.pipeline
            .encode_reference(&text::preprocess(text))
            .map_err(|reason| TokenizerError::Encode {
                path: self.source.clone(),
                reason,
            })
    }

    /// `encode(text)` followed by `[gMASK]`, `<sop>` — HF `encode(text)`.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        ids.extend([self.specials.gmask, self.specials.sop]);
        Ok(ids)
    }

    /// Text of `ids` as HF `decode(ids)` gives it (see [`DecodeOptions::default`]).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, DecodeOptions::default())
    }

    /// Text of `ids`: `<pad>` removed, special tokens optionally dropped, SentencePiece
    /// decoding, `<n>`/`<|tab|>`/`<|blank_N|>` turned back into whitespace, and optionally HF's
    /// tokenization-space cleanup. An id outside the vocabulary is an error.
    pub fn decode_with(&self, ids: &[u32], opts: DecodeOptions) -> Result<String> {
        let size = self.num_pieces();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= size) {
            return Err(TokenizerError::IdOutOfRange {
                id,
                size,
                path: self.source.clone(),
            });
        }
        let s = &self.specials;
        let skipped = [s.sop, s.eop, s.unk, s.pad, s.mask];
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| id != s.pad && !(opts.skip_special_tokens && skipped.contains(&id)))
            .collect();
        let raw = self
            .table()
            .decode(&kept)
            .map_err(|id| TokenizerError::IdOutOfRange {
                id,
                size,
                path: self.source.clone(),
            })?;
        let out = text::postprocess(&raw);
        Ok(if opts.clean_up_tokenization_spaces {
            text::clean_up_tokenization(&out)
        } else {
            out
        })
    }

    /// The special ids.
    pub fn special_ids(&self) -> SpecialIds {
        self.specials
    }

    /// `[gMASK]`.
    pub fn gmask_id(&self) -> u32 {
        self.specials.gmask
    }

    /// `[MASK]`.
    pub fn mask_id(&self) -> u32 {
        self.specials.mask
    }

    /// `<sop>` (bos).
    pub fn sop_id(&self) -> u32 {
        self.specials.sop
    }

    /// `<eop>` (eos).
    pub fn eop_id(&self) -> u32 {
        self.specials.eop
    }

    /// `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.specials.pad
    }

    /// `<unk>`.
    pub fn unk_id(&self) -> u32 {
        self.specials.unk
    }

    /// Number of pieces (130344 for `ice_text.model`). The embedding has more rows
    /// (130528); ids at or above this have no piece and must never be sampled.
    pub fn num_pieces(&self) -> usize {
        self.pipeline.table.len()
    }

    /// The id of a piece, if it is in the vocabulary.
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.pipeline.tokenizer.token_to_id(piece)
    }

    /// The piece of an id.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.pipeline.table.piece(id)
    }

    /// Piece texts and types.
    pub fn table(&self) -> &PieceTable {
        &self.pipeline.table
    }

    /// The underlying `tokenizers` pipeline (SentencePiece-exact when `▁` is prepended to
    /// non-empty input; see the `convert` module).
    pub fn hf_tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.pipeline.tokenizer
    }

    /// Ids the release forbids in English mode (`--english`: `invalid_slices`).
    ///
    /// For the released vocabulary (130344 pieces, `。` below `[MASK]`) this is exactly the
    /// release's `63823..130000`, i.e. from the id of `。` up to `[MASK]` — the block of
    /// Chinese pieces of `ice_text.model`. Other vocabularies (the stand-ins) have no such
    /// block, so there it is every normal piece that contains a CJK character (Han, CJK
    /// punctuation, full-width forms), as maximal id ranges.
    pub fn english_suppressed_ranges(&self) -> Vec<Range<u32>> {
        let table = self.table();
        if table.len() == RELEASE_VOCAB {
            if let Some(start) = self.piece_to_id("。").filter(|&i| i < self.specials.mask) {
                return std::iter::once(start..self.specials.mask).collect();
            }
        }
        let mut ranges: Vec<Range<u32>> = Vec::new();
        for (id, (piece, kind)) in table.pieces().iter().zip(table.kinds()).enumerate() {
            let id = id as u32;
            if *kind != PieceKind::Normal || !piece.chars().any(is_cjk) {
                continue;
            }
            match ranges.last_mut() {
                Some(r) if r.end == id => r.end = id + 1,
                _ => ranges.push(id..id + 1),
            }
        }
        ranges
    }

    /// The `tokenizer.json` text (with the extra `sentencepiece` section).
    pub fn to_tokenizer_json_string(&self) -> Result<String> {
        self.pipeline.to_json(&self.source)
    }

    /// Writes `tokenizer.json` atomically (temporary file in the same directory, then rename).
    pub fn to_tokenizer_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = self.to_tokenizer_json_string()?;
        write_atomic(path, json.as_bytes())
    }
}

/// Writes `bytes` to `path` atomically ([`visualglm_files::write_atomic_bytes`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    visualglm_files::write_atomic_bytes(path, bytes).map_err(|e| TokenizerError::Io {
        path: path.to_path_buf(),
        source: e.source,
    })
}
