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
            memo: Memo::default(),
        }
    }
}

struct MemoStemmerFilter<T> {
    inner: T,
    memo: Memo,
}

impl<T: Clone> Clone for MemoStemmerFilter<T> {
    /// A clone starts with an empty memo (clones go to other threads).
    fn clone(&self) -> Self {
        MemoStemmerFilter {
            inner: self.inner.clone(),
            memo: Memo::default(),
        }
    }
}

/// Bytes a word may have to be remembered: longer words (rare in any
/// language) are stemmed every time.
const INLINE: usize = 16;

/// A short word kept in the map's own memory: its bytes, little-endian and
/// zero-padded, in two machine words (a token of the simple tokenizer never
/// holds a NUL byte; one that does is not remembered).
///
/// Why not `String` keys: profiles put the memo at ~14 % of ingest CPU,
/// nearly all of it cache misses — a pointer to follow and a `memcmp` per
/// lookup, in a table of ~50-byte buckets. With 16-byte keys and 7-byte
/// values a bucket is 24 bytes and a lookup is one probe. The key is built
/// with a few overlapping loads rather than `copy_from_slice`, which for a
/// length known only at run time is a call to `memcpy` per token (4 % of
/// ingest CPU in a profile).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Word {
    lo: u64,
    hi: u64,
}

impl Word {
    fn new(s: &str) -> Option<Word> {
        let b = s.as_bytes();
        let (lo, hi) = match b.len() {
            0..=8 => (load(b), 0),
            9..=INLINE => (load(&b[..8]), load(&b[8..])),
            _ => return None,
        };
        // a NUL among the word's own bytes (padding bytes are set first)
        let n = b.len();
        let pad = |bytes: usize| match bytes {
            0 => u64::MAX,
            8.. => 0,
            k => u64::MAX << (8 * k),
        };
        if has_zero_byte(lo | pad(n)) || has_zero_byte(hi | pad(n.saturating_sub(8))) {
            return None;
        }
        Some(Word { lo, hi })
    }
}

/// Up to 8 bytes as a little-endian integer, zero-padded.
#[inline]
fn load(b: &[u8]) -> u64 {
    let n = b.len();
    let u32_at = |i: usize| {
        let w: [u8; 4] = b[i..i + 4].try_into().unwrap_or_default();
        u64::from(u32::from_le_bytes(w))
    };
    match n {
        0 => 0,
        1..=3 => {
            u64::from(b[0])
                | u64::from(b[n / 2]) << (8 * (n / 2))
                | u64::from(b[n - 1]) << (8 * (n - 1))
        }
        4..=7 => u32_at(0) | u32_at(n - 4) << (8 * (n - 4)),
        _ => {
            let w: [u8; 8] = b[..8].try_into().unwrap_or_default();
            u64::from_le_bytes(w)
        }
    }
}

/// Whether any byte of `v` is zero.
#[inline]
fn has_zero_byte(v: u64) -> bool {
    const LOW: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    v.wrapping_sub(LOW) & !v & HIGH != 0
}

/// How a word becomes its stem: keep its first `keep` bytes and append
/// `add[..add_len]` (Snowball English cuts a suffix and sometimes writes a
/// short one: `happy` → `happi`).
#[derive(Clone, Copy)]
struct Stem {
    keep: u8,
    add_len: u8,
    add: [u8; 4],
}

impl Stem {
    /// The edit from `word` to `stem`, if it is that small.
    fn between(word: &str, stem: &str) -> Option<Stem> {
        let common = word
            .bytes()
            .zip(stem.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        // on a char boundary of both, so the edit is valid UTF-8
        let keep = (0..=common)
            .rev()
            .find(|&k| word.is_char_boundary(k) && stem.is_char_boundary(k))?;
        let tail = stem.get(keep..)?.as_bytes();
        if tail.len() > 4 {
            return None;
        }
        let mut add = [0u8; 4];
        add[..tail.len()].copy_from_slice(tail);
        Some(Stem {
            keep: u8::try_from(keep).ok()?,
            add_len: tail.len() as u8,
            add,
        })
    }

    /// Rewrites `text` (the word this edit was made from) into its stem.
    fn apply(&self, text: &mut String) {
        let keep = usize::from(self.keep);
        let add = std::str::from_utf8(&self.add[..usize::from(self.add_len)]).unwrap_or_default();
        if keep <= text.len() && text.is_char_boundary(keep) {
            text.truncate(keep);
            text.push_str(add);
        }
    }
}

/// word → how to stem it, or `None` when the stem is the word itself (most
/// words of a technical corpus).
type Memo = HashMap<Word, Option<Stem>, RandomState>;

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
    memo: &'a mut Memo,
    stemmer: frostem::Stemmer,
}

impl<T: TokenStream> TokenStream for MemoStemmerStream<'_, T> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token_mut();
        let Some(word) = Word::new(&token.text) else {
            // not remembered: stemmed as tantivy's filter does
            if let std::borrow::Cow::Owned(stem) = self.stemmer.stem(&token.text) {
                token.text = stem;
            }
            return true;
        };
        let edit = match self.memo.get(&word) {
            Some(edit) => *edit,
            None => {
                let stemmed = self.stemmer.stem(&token.text);
                if stemmed == token.text.as_str() {
                    self.memo.insert(word, None);
                    None
                } else if let Some(edit) = Stem::between(&token.text, &stemmed) {
                    self.memo.insert(word, Some(edit));
                    Some(edit)
                } else {
                    // an edit too large to remember (never seen in English)
                    token.text = stemmed.into_owned();
                    return true;
                }
            }
        };
        if let Some(edit) = edit {
            edit.apply(&mut token.text);
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
            // longer than a remembered word (16 bytes), shorter than a dropped one (40)
            "internationalizationalisations Überinternationalisierungen counterrevolutionaries",
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

    #[test]
    fn a_stem_edit_rebuilds_the_stem() {
        for (word, stem) in [
            ("happy", "happi"),
            ("running", "run"),
            ("run", "run"),
            ("généralement", "général"),
            ("ab", "xyz"),
            ("", "a"),
        ] {
            let edit = Stem::between(word, stem).expect("a small edit");
            let mut text = word.to_owned();
            edit.apply(&mut text);
            assert_eq!(text, stem, "{word}");
        }
        assert!(
            Stem::between("a", "abcdef").is_none(),
            "too long to remember"
        );
    }

    /// The key of a remembered word is its bytes, zero-padded: distinct
    /// words have distinct keys, whatever their lengths.
    #[test]
    fn words_of_every_length_have_their_own_key() {
        let as_bytes = |w: Word| {
            let mut b = w.lo.to_le_bytes().to_vec();
            b.extend(w.hi.to_le_bytes());
            b
        };
        for n in 0..=INLINE {
            let word: String = "abcdefghijklmnopq".chars().take(n).collect();
            let mut want = word.as_bytes().to_vec();
            want.resize(16, 0);
            assert_eq!(as_bytes(Word::new(&word).unwrap()), want, "{word:?}");
            // a NUL anywhere is not remembered
            for i in 0..n {
                let mut with_nul = word.clone().into_bytes();
                with_nul[i] = 0;
                let with_nul = String::from_utf8(with_nul).unwrap();
                assert!(Word::new(&with_nul).is_none(), "{with_nul:?}");
            }
        }
        assert!(Word::new("seventeen bytes!!").is_none());
        assert!(Word::new("ü").is_some_and(|w| w.lo == 0xbcc3));
    }

    proptest::proptest! {
        #[test]
        fn a_word_key_is_its_zero_padded_bytes(word in "\\PC{0,18}") {
            let b = word.as_bytes();
            let key = Word::new(&word).map(|w| (w.lo, w.hi));
            let want = (b.len() <= INLINE && !b.contains(&0)).then(|| {
                let mut p = [0u8; 16];
                p[..b.len()].copy_from_slice(b);
                let (lo, hi) = p.split_at(8);
                (
                    u64::from_le_bytes(lo.try_into().unwrap()),
                    u64::from_le_bytes(hi.try_into().unwrap()),
                )
            });
            proptest::prop_assert_eq!(key, want);
        }

        #[test]
        fn any_small_edit_round_trips(word in "\\PC{0,12}", stem in "\\PC{0,12}") {
            if let Some(edit) = Stem::between(&word, &stem) {
                let mut text = word.clone();
                edit.apply(&mut text);
                proptest::prop_assert_eq!(text, stem);
            }
        }

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
