//! Searching: query parsing with clear errors, filters, BM25 ranking with a
//! stable order, pagination, total counts and highlighted snippets.

use std::ops::Bound;

use serde::Serialize;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, Query, QueryParser,
    RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use crate::fields::{self, SEARCHABLE, date, meta_term};

/// BM25 boosts of the fields that name what a text is about (a match in a
/// section's heading says more than one in its body).
///
/// Tuned on the judged Rust book set (`kontextual-bench --only quality`,
/// docs/benchmarks.md): a title or file name is scored as a field of its
/// own on top of the body, which repeats the title words anyway. Weighted
/// up (the former 3× title, 2× name) they let short pages that only carry
/// a topic's name (redirects, stubs, tables of contents) outrank the
/// chapter about it; at half weight they still break ties toward the page
/// named for the topic. nDCG@10 went from 0.80 (3×/2×) to 0.88.
const TITLE_BOOST: f32 = 0.5;
const NAME_BOOST: f32 = 0.5;
const HEADING_BOOST: f32 = 2.0;

/// English words that carry no topic in a question or keyword query
/// ("how do I …", "what is the …"): left out of plain queries. Lucene's
/// English list plus the question and auxiliary words people type; not
/// `where` (a Rust keyword and a SQL clause) nor other words that are
/// also identifiers in technical text.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", // Lucene's list
    "how", "what", "why", "when", "which", "who", "whom", "whose", "do", "does", "did", "can",
    "could", "should", "would", "i", "me", "my", "we", "our", "you", "your", "about", "am", "been",
    "being", "were", "has", "have", "had", "its",
];
use crate::{IndexError, Result, SearchIndex};

/// Which documents a search returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One hit per artifact (the whole document).
    #[default]
    Artifacts,
    /// One hit per section (markdown headings).
    Sections,
    /// Both.
    All,
}

/// Narrowing filters; each present filter must match. Within one list
/// (e.g. two collections) any value matches.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub collections: Vec<String>,
    pub types: Vec<String>,
    pub lifecycles: Vec<String>,
    pub classifications: Vec<String>,
    /// Every pair must match (`key` is a dotted path).
    pub metadata: Vec<(String, String)>,
    /// Last updated at or after.
    pub since: Option<jiff::Timestamp>,
    /// Last updated before.
    pub until: Option<jiff::Timestamp>,
    /// Only these artifacts (ids).
    pub artifact_ids: Vec<String>,
    /// What the caller may read, when it may not read everything: documents
    /// in any of these collections, or of any of these artifacts. Empty
    /// lists match nothing.
    pub readable: Option<Readable>,
}

#[derive(Clone, Debug, Default)]
pub struct Readable {
    pub collections: Vec<String>,
    pub artifact_ids: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SearchRequest<'a> {
    pub namespace: &'a str,
    /// What to search for: plain text (any string; its words are looked
    /// up), or with `syntax` tantivy query syntax: words, `"phrases"`,
    /// `+must`, `-not`, `field:term`, and `*` for every document (filters
    /// only). Empty or blank is an error.
    pub query: &'a str,
    /// Whether `query` is query syntax rather than plain text.
    pub syntax: bool,
    pub filters: Filters,
    pub granularity: Granularity,
    pub offset: usize,
    pub limit: usize,
    /// Snippet length in characters; 0 for no snippets.
    pub snippet_chars: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Snippet {
    pub text: String,
    /// Byte ranges of matched terms within `text`.
    pub highlights: Vec<(usize, usize)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    pub artifact_id: String,
    pub selector: Option<String>,
    pub heading: Option<String>,
    pub revision: u64,
    pub score: f32,
    pub collection: String,
    pub name: String,
    pub title: Option<String>,
    pub artifact_type: String,
    pub lifecycle: String,
    pub updated_at: jiff::Timestamp,
    pub snippet: Option<Snippet>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SearchResults {
    /// Documents matching the query and filters (before paging).
    pub total: usize,
    pub hits: Vec<Hit>,
}

impl SearchIndex {
    /// Turns a request's query text into a tantivy query for a granularity:
    /// plain text by default, query syntax when `syntax` is set.
    pub fn parse(
        &self,
        query: &str,
        granularity: Granularity,
        syntax: bool,
    ) -> Result<Box<dyn Query>> {
        let q = query.trim();
        if q.is_empty() {
            return Err(IndexError::Query(
                "the query is empty: give at least one word to search for".to_owned(),
            ));
        }
        if syntax {
            self.parse_syntax(query, granularity)
        } else {
            self.plain(q, granularity)
        }
    }

    /// Plain text: the words of `text` as each field's analyzer sees them,
    /// any of them in any text field, scored by BM25 with the field boosts.
    /// Built from analyzer tokens rather than by escaping query syntax, so
    /// no input can be a syntax error: punctuation, quotes, `AND`/`OR`/`NOT`
    /// and `field:` are only word separators or words.
    fn plain(&self, text: &str, granularity: Granularity) -> Result<Box<dyn Query>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in self.weighted_fields(granularity) {
            let mut analyzer = self
                .index
                .tokenizer_for_field(field)
                .map_err(|e| self.engine(e))?;
            let words = analyzed_words(&mut analyzer, text);
            let stop_forms = analyzed_words_of(&mut analyzer, STOP_WORDS);
            // Stop words carry no meaning in a question ("how do traits
            // work"), but a query made only of them ("to be or not to be")
            // is searched as it is rather than for nothing.
            let content: Vec<&String> = words.iter().filter(|w| !stop_forms.contains(*w)).collect();
            let chosen: Vec<&String> = if content.is_empty() {
                words.iter().collect()
            } else {
                content
            };
            for word in chosen {
                let term: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(field, word),
                    IndexRecordOption::WithFreqs,
                ));
                let clause = if boost == 1.0 {
                    term
                } else {
                    Box::new(BoostQuery::new(term, boost))
                };
                clauses.push((Occur::Should, clause));
            }
        }
        if clauses.is_empty() {
            // Only punctuation: nothing to look for, so nothing matches.
            return Ok(Box::new(EmptyQuery));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// The text fields a granularity searches, with their BM25 boosts.
    fn weighted_fields(&self, granularity: Granularity) -> Vec<(Field, f32)> {
        let f = &self.fields;
        match granularity {
            Granularity::Artifacts => vec![
                (f.title, TITLE_BOOST),
                (f.name, NAME_BOOST),
                (f.body, 1.0),
                (f.meta, 1.0),
            ],
            Granularity::Sections => vec![(f.s_heading, HEADING_BOOST), (f.s_body, 1.0)],
            Granularity::All => vec![
                (f.title, TITLE_BOOST),
                (f.name, NAME_BOOST),
                (f.heading, HEADING_BOOST),
                (f.body, 1.0),
                (f.meta, 1.0),
                (f.s_heading, HEADING_BOOST),
                (f.s_body, 1.0),
            ],
        }
    }

    /// tantivy query syntax: words, `"phrases"`, `+must`, `-not`,
    /// `field:term`; `*` is every document. Errors name the problem.
    fn parse_syntax(&self, query: &str, granularity: Granularity) -> Result<Box<dyn Query>> {
        let q = query.trim();
        if q == "*" {
            return Ok(Box::new(AllQuery));
        }
        if let Some(problem) = unbalanced(q) {
            return Err(IndexError::Query(format!(
                "invalid query {query:?}: {problem}"
            )));
        }
        let q = &literal_punctuation(q);
        let weighted = self.weighted_fields(granularity);
        let schema = match granularity {
            // A section search sees the section fields under the names
            // users type (`heading:`, `body:`).
            Granularity::Sections => section_view(&self.index.schema()),
            Granularity::Artifacts | Granularity::All => self.index.schema(),
        };
        let mut parser = QueryParser::new(
            schema,
            weighted.iter().map(|(field, _)| *field).collect(),
            self.index.tokenizers().clone(),
        );
        for (field, boost) in weighted {
            if boost != 1.0 {
                parser.set_field_boost(field, boost);
            }
        }
        parser
            .parse_query(q)
            .map_err(|e| IndexError::Query(explain(query, &e)))
    }

    pub fn search(&self, req: &SearchRequest<'_>) -> Result<SearchResults> {
        let text_query = self.parse(req.query, req.granularity, req.syntax)?;
        let searcher = self.reader.searcher();
        let everything = text_query.as_any().is::<AllQuery>();
        let query = self.filtered(text_query.box_clone(), req, &searcher, everything);
        let limit = req.limit.max(1);
        let top = TopDocs::with_limit(limit)
            .and_offset(req.offset)
            .order_by_score();
        let (top, total) = searcher
            .search(&query, &(top, Count))
            .map_err(|e| self.engine(e))?;
        let snippets = if req.snippet_chars > 0 {
            let make = |field| -> Result<SnippetGenerator> {
                let mut g = SnippetGenerator::create(&searcher, &*text_query, field)
                    .map_err(|e| self.engine(e))?;
                g.set_max_num_chars(req.snippet_chars);
                Ok(g)
            };
            Some((make(self.fields.body)?, make(self.fields.s_body)?))
        } else {
            None
        };
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            hits.push(self.hit(
                &searcher,
                score,
                addr,
                snippets.as_ref().map(|(a, s)| (a, s, req.snippet_chars)),
            )?);
        }
        Ok(SearchResults { total, hits })
    }

    fn filtered(
        &self,
        text: Box<dyn Query>,
        req: &SearchRequest<'_>,
        searcher: &Searcher,
        everything: bool,
    ) -> Box<dyn Query> {
        let f = &self.fields;
        let term = |field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        let any_of = |field, values: &[String]| -> Box<dyn Query> {
            if values.len() == 1 {
                term(field, &values[0])
            } else {
                Box::new(BooleanQuery::new(
                    values
                        .iter()
                        .map(|v| (Occur::Should, term(field, v)))
                        .collect(),
                ))
            }
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text)];
        // The namespace filter turns a pruned top-k into a full intersection;
        // skip it when every document (deleted ones included) is in the
        // caller's namespace, which single-tenant stores always are.
        let ns_term = Term::from_field_text(f.namespace, req.namespace);
        let max_doc: u64 = searcher
            .segment_readers()
            .iter()
            .map(|s| u64::from(s.max_doc()))
            .sum();
        if searcher.doc_freq(&ns_term).unwrap_or(0) != max_doc {
            clauses.push((Occur::Must, filter(term(f.namespace, req.namespace))));
        }
        // Text queries only touch their granularity's fields; a match-all
        // query needs the kind spelled out.
        match req.granularity {
            Granularity::Artifacts if everything => {
                clauses.push((Occur::Must, filter(term(f.kind, fields::KIND_ARTIFACT))))
            }
            Granularity::Sections if everything => {
                clauses.push((Occur::Must, filter(term(f.kind, fields::KIND_SECTION))))
            }
            _ => {}
        }
        let fl = &req.filters;
        for (field, values) in [
            (f.collection, &fl.collections),
            (f.artifact_type, &fl.types),
            (f.lifecycle, &fl.lifecycles),
            (f.classification, &fl.classifications),
            (f.artifact_id, &fl.artifact_ids),
        ] {
            if !values.is_empty() {
                clauses.push((Occur::Must, filter(any_of(field, values))));
            }
        }
        if let Some(r) = &fl.readable {
            let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for c in &r.collections {
                any.push((Occur::Should, term(f.collection, c)));
            }
            for a in &r.artifact_ids {
                any.push((Occur::Should, term(f.artifact_id, a)));
            }
            if any.is_empty() {
                // nothing readable: a term no document has
                any.push((Occur::Should, term(f.collection, "\u{0}")));
            }
            clauses.push((Occur::Must, filter(Box::new(BooleanQuery::new(any)))));
        }
        for (k, v) in &fl.metadata {
            clauses.push((Occur::Must, filter(term(f.meta_kv, &meta_term(k, v)))));
        }
        if fl.since.is_some() || fl.until.is_some() {
            let lower = fl.since.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_date(f.updated_at, date(t)))
            });
            let upper = fl.until.map_or(Bound::Unbounded, |t| {
                Bound::Excluded(Term::from_field_date(f.updated_at, date(t)))
            });
            clauses.push((Occur::Must, filter(Box::new(RangeQuery::new(lower, upper)))));
        }
        if clauses.len() == 1 {
            // No filter: the bare text query keeps tantivy's pruned top-k.
            return clauses
                .pop()
                .map_or_else(|| Box::new(AllQuery) as Box<dyn Query>, |(_, q)| q);
        }
        Box::new(BooleanQuery::new(clauses))
    }

    fn hit(
        &self,
        searcher: &Searcher,
        score: f32,
        addr: DocAddress,
        snippets: Option<(&SnippetGenerator, &SnippetGenerator, usize)>,
    ) -> Result<Hit> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(|e| self.engine(e))?;
        let f = &self.fields;
        let s = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let section = doc.get_first(f.s_body).is_some();
        let body_field = if section { f.s_body } else { f.body };
        let snippet = snippets.map(|(whole, part, chars)| {
            let g = if section { part } else { whole };
            let mut sn = g.snippet_from_doc(&doc);
            if sn.is_empty() {
                // No query term in the body (matched on title or name, or a
                // filter-only search): show the start of the text instead.
                let body = s(body_field).unwrap_or_default();
                let mut end = body.len().min(chars);
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                return Snippet {
                    text: body[..end].trim().to_owned(),
                    highlights: Vec::new(),
                };
            }
            sn.set_snippet_prefix_postfix("", "");
            Snippet {
                text: sn.fragment().to_owned(),
                highlights: sn.highlighted().iter().map(|r| (r.start, r.end)).collect(),
            }
        });
        Ok(Hit {
            artifact_id: s(f.artifact_id).unwrap_or_default(),
            selector: s(f.selector),
            heading: s(f.s_heading),
            revision: doc
                .get_first(f.revision)
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            score,
            collection: s(f.collection).unwrap_or_default(),
            name: s(f.name_exact).unwrap_or_default(),
            title: s(f.title_stored),
            artifact_type: s(f.artifact_type).unwrap_or_default(),
            lifecycle: s(f.lifecycle).unwrap_or_default(),
            updated_at: doc
                .get_first(f.updated_at)
                .and_then(|v| v.as_datetime())
                .and_then(|d| jiff::Timestamp::from_microsecond(d.into_timestamp_micros()).ok())
                .unwrap_or_default(),
            snippet,
        })
    }
}

/// The distinct terms an analyzer makes of `text`, in first-seen order.
fn analyzed_words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        if !words.contains(&token.text) {
            words.push(token.text.clone());
        }
    }
    words
}

/// The terms an analyzer makes of each word (a stop word as it would
/// appear among a query's analysed, e.g. stemmed, terms).
fn analyzed_words_of(analyzer: &mut TextAnalyzer, list: &[&str]) -> Vec<String> {
    list.iter()
        .flat_map(|w| analyzed_words(analyzer, w))
        .collect()
}

/// Makes everyday punctuation literal, so agents can pass questions as
/// they are: outside double quotes, `'`, brackets, braces and angle
/// brackets are escaped, and so is a `:` unless it follows a field name
/// (`title:deploy` stays a field query; `error: refused`, `12:30` and
/// `https://…` are text).
pub(crate) fn literal_punctuation(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 8);
    let mut in_quotes = false;
    let mut word = String::new();
    let mut escaped = false;
    for c in q.chars() {
        if escaped {
            out.push(c);
            escaped = false;
            word.clear();
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                out.push(c);
            }
            '"' => {
                in_quotes = !in_quotes;
                out.push(c);
                word.clear();
            }
            _ if in_quotes => out.push(c),
            ':' => {
                let field = word.trim_start_matches(['+', '-', '(']);
                if !SEARCHABLE.contains(&field) {
                    out.push('\\');
                }
                out.push(':');
                word.clear();
            }
            '\'' | '[' | ']' | '{' | '}' | '<' | '>' => {
                out.push('\\');
                out.push(c);
                word.clear();
            }
            c if c.is_whitespace() => {
                out.push(c);
                word.clear();
            }
            c => {
                out.push(c);
                word.push(c);
            }
        }
    }
    out
}

/// Names an unclosed double quote or an unmatched parenthesis, by position
/// (1-based characters), for the error message.
fn unbalanced(q: &str) -> Option<String> {
    let mut quote_at = None;
    let mut opens: Vec<usize> = Vec::new();
    let mut escaped = false;
    for (i, c) in q.chars().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => {
                quote_at = if quote_at.is_some() {
                    None
                } else {
                    Some(i + 1)
                }
            }
            '(' if quote_at.is_none() => opens.push(i + 1),
            ')' if quote_at.is_none() && opens.pop().is_none() => {
                return Some(format!("unmatched ')' at character {}", i + 1));
            }
            _ => {}
        }
    }
    if let Some(at) = quote_at {
        return Some(format!(
            "the double quote at character {at} is never closed (phrases go in \"…\")"
        ));
    }
    opens
        .last()
        .map(|at| format!("the '(' at character {at} is never closed"))
}

/// The schema as a section search sees it: the same fields (same ids), with
/// the section text fields named `heading` and `body`, so users type the
/// same field names whatever they search.
fn section_view(schema: &tantivy::schema::Schema) -> tantivy::schema::Schema {
    let mut b = tantivy::schema::Schema::builder();
    for (_, entry) in schema.fields() {
        let name = match entry.name() {
            "body" => "_a_body",
            "heading" => "_a_heading",
            "_s_body" => "body",
            "_s_heading" => "heading",
            other => other,
        };
        b.add_field(tantivy::schema::FieldEntry::new(
            name.to_owned(),
            entry.field_type().clone(),
        ));
    }
    b.build()
}

/// A clause that narrows without changing scores.
fn filter(q: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(q, 0.0))
}

/// A parse error in words: what is wrong, in which query, and what to do.
fn explain(query: &str, e: &tantivy::query::QueryParserError) -> String {
    use tantivy::query::QueryParserError as E;
    let hint =
        "put words in double quotes to search for them literally, or search without query syntax";
    match e {
        E::FieldDoesNotExist(field) => format!(
            "invalid query {query:?}: unknown field '{field}' (searchable fields: {}); {hint}",
            SEARCHABLE.join(", ")
        ),
        E::SyntaxError(detail) => {
            format!("invalid query {query:?}: syntax error ({detail}); {hint}")
        }
        E::AllButQueryForbidden => format!(
            "invalid query {query:?}: it only excludes terms; add at least one term to search for"
        ),
        other => format!("invalid query {query:?}: {other}; {hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_becomes_literal_outside_phrases() {
        assert_eq!(literal_punctuation("don't"), "don\\'t");
        assert_eq!(literal_punctuation("error: refused"), "error\\: refused");
        assert_eq!(literal_punctuation("title:deploy"), "title:deploy");
        assert_eq!(
            literal_punctuation("+heading:x -body:y"),
            "+heading:x -body:y"
        );
        assert_eq!(literal_punctuation("at 12:30"), "at 12\\:30");
        assert_eq!(
            literal_punctuation("\"it's: here\" [x]"),
            "\"it's: here\" \\[x\\]"
        );
        assert_eq!(literal_punctuation("a\\:b"), "a\\:b");
    }

    #[test]
    fn unbalanced_quotes_and_parentheses_are_located() {
        assert_eq!(unbalanced("a \"b\" (c)"), None);
        assert!(unbalanced("a \"b").unwrap().contains("character 3"));
        assert!(unbalanced("(a").unwrap().contains("character 1"));
        assert!(unbalanced("a)").unwrap().contains("character 2"));
        assert_eq!(unbalanced("\"(\""), None);
    }
}
