//! Spark ML's `Tokenizer` + `StopWordsRemover` + `array_contains`, measured against PySpark 4.3.
//!
//! The PySpark job this project replaces computes, for every review,
//! `array_contains(StopWordsRemover(Tokenizer(review_str)), "good")`. `Tokenizer` lowercases
//! with Java's `String.toLowerCase()` and splits on the Java regex `\s`, which is exactly six
//! ASCII characters (space, TAB, LF, VT, FF, CR) and nothing else. Empty tokens are kept and
//! never match. `StopWordsRemover` cannot change the answer for a word that is not a stop word,
//! so for such a word the result is "some `\s`-separated token, lowercased, equals the word".
//!
//! That rule is what [`tokens_contain`] computes. For an ASCII-lowercase word (like `good`) it
//! never allocates: Java's lowercasing maps no non-ASCII character onto an ASCII letter (it
//! does map `K` KELVIN SIGN onto `k`, which is why the fast path is only taken when the word has
//! no `k`; see [`AsciiWord`]), so a token equals the word exactly when it has the word's length
//! in bytes and matches it ASCII-case-insensitively.

use std::sync::LazyLock;

/// The six characters Java's regex `\s` matches; Spark's `Tokenizer` splits on them.
pub const JAVA_WHITESPACE: [u8; 6] = [b' ', b'\t', b'\n', 0x0B, 0x0C, b'\r'];

/// The word the classifier looks for: `positive_review = array_contains(tokens, "good")`.
pub const POSITIVE_WORD: &str = "good";

/// Spark's default English stop words (`StopWordsRemover.loadDefaultStopWords("english")`).
pub static SPARK_ENGLISH_STOP_WORDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| include_str!("spark-english-stopwords.txt").split_ascii_whitespace().collect());

/// Whether `word` is one of Spark's default English stop words (compared case-insensitively,
/// as `StopWordsRemover` does by default).
pub fn is_stop_word(word: &str) -> bool {
    let lower = word.to_lowercase();
    SPARK_ENGLISH_STOP_WORDS.iter().any(|w| *w == lower)
}

fn is_java_whitespace(byte: u8) -> bool {
    JAVA_WHITESPACE.contains(&byte)
}

/// A needle prepared once per batch: the fast path applies when the word is ASCII, already
/// lowercase, free of whitespace, and has no `k` (U+212A KELVIN SIGN lowercases to `k`).
#[derive(Debug, Clone)]
pub enum Needle {
    /// Matched byte-wise, case-insensitively, without allocating.
    Ascii(AsciiWord),
    /// Any other word: tokens are lowercased with Unicode rules, as Java does.
    General(String),
}

/// An ASCII-lowercase word with no whitespace and no `k`.
#[derive(Debug, Clone)]
pub struct AsciiWord {
    bytes: Vec<u8>,
}

impl Needle {
    /// Prepares `word` for matching against many texts.
    pub fn new(word: &str) -> Self {
        let fast = !word.is_empty()
            && word.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase())
            && !word.bytes().any(is_java_whitespace)
            && !word.contains('k');
        if fast { Needle::Ascii(AsciiWord { bytes: word.as_bytes().to_vec() }) } else { Needle::General(word.to_string()) }
    }

    /// `true` when some `\s`-separated token of `text`, lowercased, equals the word.
    pub fn is_in(&self, text: &str) -> bool {
        match self {
            Needle::Ascii(word) => word.is_token_of(text.as_bytes()),
            Needle::General(word) => text.split(|c: char| c.is_ascii() && is_java_whitespace(c as u8)).any(|token| token.to_lowercase() == *word),
        }
    }
}

impl AsciiWord {
    /// Scans for the word's first letter (either case) with `memchr2`, then checks the rest of
    /// the letters and that whitespace or the text's ends sit on both sides.
    fn is_token_of(&self, text: &[u8]) -> bool {
        let word = &self.bytes;
        let first = word[0];
        let len = word.len();
        for at in memchr::memchr2_iter(first, first.to_ascii_uppercase(), text) {
            let end = at + len;
            if end > text.len() {
                return false;
            }
            let starts_token = at == 0 || is_java_whitespace(text[at - 1]);
            let ends_token = end == text.len() || is_java_whitespace(text[end]);
            if starts_token && ends_token && text[at..end].eq_ignore_ascii_case(word) {
                return true;
            }
        }
        false
    }
}

/// `true` when the Spark job would put `word` in `array_contains(tokens, word)` for `text`.
///
/// ```
/// use ubm_jobs::spark::tokens_contain;
/// assert!(tokens_contain("This movie was GOOD", "good"));
/// assert!(!tokens_contain("not good, really", "good")); // the token is `good,`
/// assert!(!tokens_contain("very\u{a0}good", "good"));   // NBSP is not Java's \s
/// ```
pub fn tokens_contain(text: &str, word: &str) -> bool {
    Needle::new(word).is_in(text)
}

/// Spark's `Tokenizer` output for `text`, for tests and for reading the rule off.
pub fn spark_tokenize(text: &str) -> Vec<String> {
    text.to_lowercase().split(|c: char| c.is_ascii() && is_java_whitespace(c as u8)).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example of the classifier contract (`docs/classifier.md`), as (review_str, positive_review).
    const SPEC_EXAMPLES: &[(&str, bool)] = &[
        ("This movie was good", true),
        ("GOOD movie", true),
        ("GoOd", true),
        ("Good", true),
        ("good.", false),
        ("not good, really", false),
        ("a\tgood\tone", true),
        ("so good\nreally", true),
        ("\x0Bgood\x0C", true),
        ("good\r", true),
        ("very\u{a0}good", false),
        ("good\u{3000}thing", false),
        ("good\u{85}", false),
        ("good\u{2028}next", false),
        ("good\u{1f}", false),
        ("goodness gracious", false),
        ("  good  ", true),
        ("<br />good<br />", false),
        ("the good the bad", true),
        ("\"quoted\" good", true),
    ];

    #[test]
    fn spec_examples_match_spark() {
        for (text, expected) in SPEC_EXAMPLES {
            assert_eq!(tokens_contain(text, POSITIVE_WORD), *expected, "review {text:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_tokenize_then_compare() {
        let texts = [
            "",
            "g",
            "goo",
            "good",
            "GOOD!",
            "xgood",
            "goodx",
            "a good",
            "good a",
            "ǵood",
            "ｇｏｏｄ",
            "go\u{0}od",
            "İgood",
            "good\u{0130}",
            "\tgood\t",
            "gOoD\r\n",
            "ggood good",
        ];
        for text in texts {
            let reference = spark_tokenize(text).iter().any(|t| t == POSITIVE_WORD);
            assert_eq!(tokens_contain(text, POSITIVE_WORD), reference, "text {text:?}");
        }
    }

    #[test]
    fn general_needles_lowercase_tokens_like_java() {
        assert!(tokens_contain("A KILO of rice", "kilo"));
        assert!(tokens_contain("\u{212A}ilo", "kilo")); // KELVIN SIGN lowercases to k
        assert!(tokens_contain("ÉTÉ chaud", "été"));
        assert!(!tokens_contain("été", "ETE"));
    }

    #[test]
    fn stop_words_never_change_the_positive_word() {
        assert_eq!(SPARK_ENGLISH_STOP_WORDS.len(), 181);
        assert!(is_stop_word("The"));
        assert!(!is_stop_word(POSITIVE_WORD));
    }

    #[test]
    fn embedded_stop_words_equal_the_contracts_list() {
        let list = include_str!("../../docs/spark-english-stopwords.txt");
        let words: Vec<&str> = list.split_ascii_whitespace().collect();
        assert_eq!(words, *SPARK_ENGLISH_STOP_WORDS);
    }
}
