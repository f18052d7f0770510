//! The English analyzer (`en_stem`), with its stemmer memoised.
//!
//! Profiles of ingest put Snowball stemming at ~16 % of the CPU: every
//! occurrence of every word is stemmed, while a corpus's vocabulary is small
//! and Zipfian (a few thousand words make most occurrences). The analyzer is
//! tantivy's own `en_stem` chain (simple tokenizer, long tokens dropped,
//! lower-cased, Snowball English) with one change: each analyzer instance
//! remembers the stems it computed. tantivy clones the analyzer per indexing
//! thread and per query parser, so a cache is never shared and needs no
//! lock. The output is the same token for token (a property test checks it
//! against tantivy's chain), so indexes built with either read the same.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, Token, TokenFilter, TokenStream,
    Tokenizer,
};

/// The name the schema's text fields use for the English analyzer.
pub(crate) const STEMMED: &str = "en_stem";

/// Words longer than this (in bytes) are dropped, as tantivy's `en_stem` does.
const LONGEST_WORD: usize = 40;

/// Entries one cache holds before it starts over (a bound on memory for
/// corpora with unbounded vocabularies: ids, hashes, numbers).
const CACHE_ENTRIES: usize = 64 * 1024;

/// The analyzer registered as [`STEMMED`] on every index this crate opens.
pub(crate) fn english() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(LONGEST_WORD))
        .filter(LowerCaser)
        .filter(MemoStemmer)
        .build()
}

/// Registers this crate's analyzers on `index` (before a writer or a query
/// parser takes them).
pub(crate) fn register(index: &tantivy::Index) {
    index.tokenizers().register(STEMMED, english());
}

/// tantivy's `en_stem`, for comparison in tests.
#[cfg(test)]
fn tantivy_english() -> TextAnalyzer {
    use tantivy::tokenizer::{Language, Stemmer};
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(LONGEST_WORD))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Snowball English with a per-instance memo of word → stem.
#[derive(Clone, Copy)]
struct MemoStemmer;

impl TokenFilter for MemoStemmer {
    type Tokenizer<T: Tokenizer> = MemoStemmerFilter<T>;

    fn transform<T: Tokenizer>(self, inner: T) -> MemoStemmerFilter<T> {
        MemoStemmerFilter {
            inner,
            memo: HashMap::default(),
        }
    }
}

struct MemoStemmerFilter<T> {
    inner: T,
    /// word → its stem, or `None` when the stem is the word itself (most
    /// words of a technical corpus: no second allocation for them).
    memo: HashMap<String, Option<String>, RandomState>,
}

impl<T: Clone> Clone for MemoStemmerFilter<T> {
    /// A clone starts with an empty memo (clones go to other threads).
    fn clone(&self) -> Self {
        MemoStemmerFilter {
            inner: self.inner.clone(),
            memo: HashMap::default(),
        }
    }
}

impl<T: Tokenizer> Tokenizer for MemoStemmerFilter<T> {
    type TokenStream<'a> = MemoStemmerStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        if self.memo.len() > CACHE_ENTRIES {
            self.memo.clear();
        }
        MemoStemmerStream {
            tail: self.inner.token_stream(text),
            memo: &mut self.memo,
            stemmer: frostem::Stemmer::new(frostem::Algorithm::English),
        }
    }
}

struct MemoStemmerStream<'a, T> {
    tail: T,
    memo: &'a mut HashMap<String, Option<String>, RandomState>,
    stemmer: frostem::Stemmer,
}

impl<T: TokenStream> TokenStream for MemoStemmerStream<'_, T> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token_mut();
        let stem = match self.memo.get(&token.text) {
            Some(stem) => stem,
            None => {
                let stem = match self.stemmer.stem(&token.text) {
                    std::borrow::Cow::Borrowed(s) if s == token.text => None,
                    other => Some(other.into_owned()),
                };
                self.memo.entry(token.text.clone()).or_insert(stem)
            }
        };
        if let Some(stem) = stem {
            token.text.clear();
            token.text.push_str(stem);
        }
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(a: &mut TextAnalyzer, text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut out = Vec::new();
        let mut s = a.token_stream(text);
        while let Some(t) = s.next() {
            out.push((t.text.clone(), t.offset_from, t.offset_to, t.position));
        }
        out
    }

    #[test]
    fn k7_memoised_stemming_is_tantivys_en_stem_token_for_token() {
        let mut ours = english();
        let mut theirs = tantivy_english();
        let texts = [
            "Running runners ran; the runner's runs were running quickly.",
            "généralement les Étés ÉTAIENT chauds — naïve façade, Straße",
            "traits Traits TRAITS trait's impl<T: Trait> for Vec<T>",
            "a-very-long-hyphenated-word-that-goes-on-and-on-and-on-beyond-forty-bytes ok",
            "",
            "   \u{0}\u{feff} mixed 123 4.5e6 0xdeadbeef ownership borrowing lifetimes",
        ];
        // twice: the second pass reads the memo
        for _ in 0..2 {
            for t in texts {
                assert_eq!(tokens(&mut ours, t), tokens(&mut theirs, t), "{t:?}");
            }
        }
    }

    #[test]
    fn the_memo_is_bounded() {
        let mut ours = english();
        let mut theirs = tantivy_english();
        let text: String = (0..CACHE_ENTRIES + 500)
            .map(|i| format!("word{i}ing "))
            .collect();
        assert_eq!(tokens(&mut ours, &text), tokens(&mut theirs, &text));
        // the next text starts over with an empty memo, still the same output
        assert_eq!(
            tokens(&mut ours, "walking walked"),
            tokens(&mut theirs, "walking walked")
        );
    }

    proptest::proptest! {
        #[test]
        fn k7_memoised_stemming_matches_on_any_text(
            texts in proptest::collection::vec("[a-zA-Z0-9 ,.'éÉßİı\u{300}-]{0,60}", 1..8)
        ) {
            let mut ours = english();
            let mut theirs = tantivy_english();
            for t in texts.iter().chain(texts.iter()) {
                proptest::prop_assert_eq!(tokens(&mut ours, t), tokens(&mut theirs, t));
            }
        }
    }
}
