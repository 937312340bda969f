//! Answer normalisation of the official VQA evaluation.
//!
//! Predictions: `\n`/`\t` → space, strip, [`process_punctuation`], [`process_digit_article`].
//! Ground-truth answers get only [`process_punctuation`], and only when the 10 answers are
//! not all identical (see [`crate::vqa::accuracy`]).
//!
//! `\d` in the official regular expressions matches Unicode decimal digits; here any Unicode
//! numeric character counts, which differs only for characters such as `²` or `½`.

/// Characters the official code removes or replaces by a space.
const PUNCT: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// Number words mapped to digits.
const NUMBER_WORDS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// The official contraction table, verbatim (including its odd entries such as
/// `somebody'd` → `somebodyd` and capitalised keys that never match lower-cased text).
const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

fn is_digit(c: char) -> bool {
    c.is_numeric()
}

/// True when the text contains `digit , digit`.
fn has_digit_comma_digit(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(3)
        .any(|w| is_digit(w[0]) && w[1] == ',' && is_digit(w[2]))
}

/// `processPunctuation`: each punctuation character is deleted when it is adjacent to a
/// space in the input or the input has a `d,d` comma, else replaced by a space; then up to
/// 32 periods not followed by a digit are deleted (the official code passes `re.UNICODE` as
/// the `count` argument of `re.sub`, which is 32).
pub fn process_punctuation(text: &str) -> String {
    let comma = has_digit_comma_digit(text);
    let mut out = text.to_string();
    for p in PUNCT {
        let adjacent = text.contains(&format!("{p} ")) || text.contains(&format!(" {p}"));
        if !out.contains(p) {
            continue;
        }
        out = if adjacent || comma {
            out.replace(p, "")
        } else {
            out.replace(p, " ")
        };
    }
    strip_periods(&out, 32)
}

fn strip_periods(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let next_is_digit = chars.get(i + 1).is_some_and(|&n| is_digit(n));
        if c == '.' && !next_is_digit && removed < max {
            removed += 1;
            continue;
        }
        out.push(c);
    }
    out
}

/// `processDigitArticle`: lower-case, split on whitespace, number words → digits, drop
/// articles, expand contractions, join with one space.
pub fn process_digit_article(text: &str) -> String {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split_whitespace()
        .map(|w| {
            NUMBER_WORDS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| {
            CONTRACTIONS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .collect();
    words.join(" ")
}

/// The full normalisation applied to a predicted answer.
pub fn normalize_prediction(answer: &str) -> String {
    let text = answer.replace(['\n', '\t'], " ");
    process_digit_article(&process_punctuation(text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_rules() {
        assert_eq!(process_punctuation("1,000"), "1000");
        assert_eq!(process_punctuation("3-2"), "3 2");
        assert_eq!(process_punctuation("3 - 2"), "3  2");
        assert_eq!(process_punctuation("hot-dog"), "hot dog");
        assert_eq!(process_punctuation("umbrella."), "umbrella");
        assert_eq!(process_punctuation("2.50"), "2.50");
        assert_eq!(process_punctuation("$2.50"), "$2.50");
        assert_eq!(process_punctuation(&".".repeat(40)), ".".repeat(8));
    }

    #[test]
    fn digits_articles_contractions() {
        assert_eq!(normalize_prediction("  The TWO dogs\n"), "2 dogs");
        assert_eq!(normalize_prediction("hes happy"), "he's happy");
        assert_eq!(normalize_prediction("None."), "0");
        assert_eq!(normalize_prediction(""), "");
    }
}
