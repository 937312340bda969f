//! Text in the loss plot, drawn from the `font8x8` bitmap font (public-domain 8×8 glyphs of
//! basic Latin), so the build needs no font library or font file.

use font8x8::UnicodeFonts;
use plotters::prelude::*;

/// Glyph cell size in pixels at scale 1.
const CELL: i32 = 8;

/// Width in pixels of `text` at `scale`.
pub(super) fn width(text: &str, scale: i32) -> i32 {
    text.chars().count() as i32 * CELL * scale
}

/// Height in pixels of a line at `scale`.
pub(super) fn height(scale: i32) -> i32 {
    CELL * scale
}

/// Draws `text` in `colour` with its top-left corner at `at`; characters outside basic
/// Latin are drawn as `?`.
pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    at: (i32, i32),
    scale: i32,
    colour: RGBColor,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    for (k, c) in text.chars().enumerate() {
        let rows = font8x8::BASIC_FONTS
            .get(c)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        let cx = at.0 + k as i32 * CELL * scale;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..CELL {
                // Bit 0 is the leftmost pixel.
                if bits & (1 << col) != 0 {
                    let x = cx + col * scale;
                    let y = at.1 + r as i32 * scale;
                    area.draw(&Rectangle::new(
                        [(x, y), (x + scale, y + scale)],
                        colour.filled(),
                    ))?;
                }
            }
        }
    }
    Ok(())
}
