//! The schema: which fields exist, how each is analysed, and how an
//! [`IndexDoc`] becomes a tantivy document.

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::{DateTime, TantivyDocument};

use crate::IndexDoc;

pub(crate) const KIND_ARTIFACT: &str = "artifact";
pub(crate) const KIND_SECTION: &str = "section";

use crate::analysis::STEMMED;

/// Field handles. Searchable text fields carry the names users may type in a
/// query (`title:deploy`); filter fields start with `_`.
///
/// Artifact documents and section documents use separate text fields
/// (`body` vs `_s_body`, …): an artifact search never walks section
/// postings (no filter needed, and BM25 statistics are per granularity),
/// and vice versa. A section search sees `_s_heading`/`_s_body` under the
/// names `heading`/`body` (see `query::section_view`).
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    pub key: Field,
    pub artifact_id: Field,
    pub namespace: Field,
    pub kind: Field,
    pub selector: Field,
    pub revision: Field,
    pub collection: Field,
    pub name_exact: Field,
    pub artifact_type: Field,
    pub lifecycle: Field,
    pub classification: Field,
    pub meta_kv: Field,
    /// The artifact's title as stored (shown with every hit).
    pub title_stored: Field,
    pub created_at: Field,
    pub updated_at: Field,
    // searchable
    pub title: Field,
    pub name: Field,
    pub body: Field,
    pub meta: Field,
    /// Every heading of the artifact (artifact documents).
    pub heading: Field,
    pub s_heading: Field,
    pub s_body: Field,
}

/// Fields a user may name in a query.
pub(crate) const SEARCHABLE: [&str; 5] = ["title", "name", "body", "meta", "heading"];

impl Fields {
    pub(crate) fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let text = |stored: bool, tokenizer: &str| {
            let o = TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            );
            if stored { o.set_stored() } else { o }
        };
        let date = DateOptions::default()
            .set_indexed()
            .set_fast()
            .set_stored()
            .set_precision(DateTimePrecision::Microseconds);
        let f = Fields {
            key: b.add_text_field("_key", STRING | STORED),
            artifact_id: b.add_text_field("_artifact", STRING | STORED),
            namespace: b.add_text_field("_namespace", STRING),
            kind: b.add_text_field("_kind", STRING),
            selector: b.add_text_field("_selector", STRING | STORED),
            revision: b.add_u64_field("_revision", STORED),
            collection: b.add_text_field("_collection", STRING | STORED),
            name_exact: b.add_text_field("_name", STRING | STORED),
            artifact_type: b.add_text_field("_type", STRING | STORED),
            lifecycle: b.add_text_field("_lifecycle", STRING | STORED),
            classification: b.add_text_field("_classification", STRING | STORED),
            meta_kv: b.add_text_field("_meta", STRING),
            title_stored: b.add_text_field("_title", STORED),
            created_at: b.add_date_field("_created", date.clone()),
            updated_at: b.add_date_field("_updated", date),
            title: b.add_text_field("title", text(false, STEMMED)),
            name: b.add_text_field("name", text(false, "default")),
            body: b.add_text_field("body", text(true, STEMMED)),
            meta: b.add_text_field("meta", text(false, STEMMED)),
            heading: b.add_text_field("heading", text(false, STEMMED)),
            s_heading: b.add_text_field("_s_heading", text(true, STEMMED)),
            s_body: b.add_text_field("_s_body", text(true, STEMMED)),
        };
        (b.build(), f)
    }

    pub(crate) fn from_schema(schema: &Schema) -> Option<Fields> {
        let g = |n: &str| schema.get_field(n).ok();
        Some(Fields {
            key: g("_key")?,
            artifact_id: g("_artifact")?,
            namespace: g("_namespace")?,
            kind: g("_kind")?,
            selector: g("_selector")?,
            revision: g("_revision")?,
            collection: g("_collection")?,
            name_exact: g("_name")?,
            artifact_type: g("_type")?,
            lifecycle: g("_lifecycle")?,
            classification: g("_classification")?,
            meta_kv: g("_meta")?,
            title_stored: g("_title")?,
            created_at: g("_created")?,
            updated_at: g("_updated")?,
            title: g("title")?,
            name: g("name")?,
            body: g("body")?,
            meta: g("meta")?,
            heading: g("heading")?,
            s_heading: g("_s_heading")?,
            s_body: g("_s_body")?,
        })
    }

    pub(crate) fn document(&self, d: &IndexDoc) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        let key = match (&d.selector, d.part) {
            (Some(s), _) => format!("{}#{s}", d.artifact_id),
            (None, true) => format!("{}#", d.artifact_id),
            (None, false) => d.artifact_id.clone(),
        };
        doc.add_text(self.key, &key);
        doc.add_text(self.artifact_id, &d.artifact_id);
        doc.add_text(self.namespace, &d.namespace);
        doc.add_text(self.kind, if d.part { KIND_SECTION } else { KIND_ARTIFACT });
        if let Some(s) = &d.selector {
            doc.add_text(self.selector, s);
        }
        if let Some(h) = &d.heading {
            doc.add_text(self.s_heading, h);
        }
        for h in &d.headings {
            doc.add_text(self.heading, h);
        }
        doc.add_u64(self.revision, d.revision);
        doc.add_text(self.collection, &d.collection);
        doc.add_text(self.name_exact, &d.name);
        // Name, title and metadata text describe the artifact: searchable on
        // its document only, so a section matches by its own heading and text
        // (and indexing sections costs no more than their text). Titles are
        // still stored, to show with section hits.
        let whole = !d.part;
        if whole {
            doc.add_text(self.name, &d.name);
        }
        if let Some(t) = &d.title {
            doc.add_text(self.title_stored, t);
            if whole {
                doc.add_text(self.title, t);
            }
        }
        doc.add_text(self.artifact_type, &d.artifact_type);
        doc.add_text(self.lifecycle, &d.lifecycle);
        doc.add_text(self.classification, &d.classification);
        for (k, v) in &d.metadata {
            doc.add_text(self.meta_kv, meta_term(k, v));
            if whole {
                doc.add_text(self.meta, v);
            }
        }
        doc.add_date(self.created_at, date(d.created_at));
        doc.add_date(self.updated_at, date(d.updated_at));
        doc.add_text(if whole { self.body } else { self.s_body }, &d.body);
        doc
    }
}

pub(crate) fn date(t: jiff::Timestamp) -> DateTime {
    DateTime::from_timestamp_micros(t.as_microsecond())
}

/// The exact-match term of one metadata pair.
pub(crate) fn meta_term(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

/// Flattens a metadata object into `(dotted.key, value)` pairs: strings as
/// they are, numbers and booleans in their JSON spelling; arrays contribute
/// each scalar element under the array's key. `null` is skipped.
pub fn metadata_pairs(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        use serde_json::Value as V;
        match v {
            V::Null => {}
            V::String(s) => out.push((prefix.to_owned(), s.clone())),
            V::Bool(_) | V::Number(_) => out.push((prefix.to_owned(), v.to_string())),
            V::Array(items) => items.iter().for_each(|i| walk(prefix, i, out)),
            V::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_flattens_to_dotted_pairs() {
        let v = serde_json::json!({"team": "payments", "n": 3, "tags": ["a", "b"], "owner": {"name": "x"}, "gone": null});
        let mut p = metadata_pairs(&v);
        p.sort();
        let want: Vec<(String, String)> = [
            ("n", "3"),
            ("owner.name", "x"),
            ("tags", "a"),
            ("tags", "b"),
            ("team", "payments"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(p, want);
    }
}
