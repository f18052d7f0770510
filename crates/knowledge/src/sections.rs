//! Sections by selector (K5): `handbook/guide.md#installation/linux`.
//! Sections are computed from the stored bytes by the format's adapter, so
//! they always match the revision they are read from.

use std::io::Read;

use kontextual_adapters::sections::{Section, find, for_content, sectioner_for};
use kontextual_model::{Artifact, ArtifactRef, Digest, Revision};
use serde::Serialize;

use crate::{Caller, Error, Knowledge, Result};

/// One section of one revision, with its bytes.
#[derive(Clone, Debug, Serialize)]
pub struct SectionView {
    #[serde(rename = "ref")]
    pub reference: String,
    pub artifact_id: kontextual_model::ArtifactId,
    pub revision: u64,
    pub selector: String,
    pub heading: String,
    pub level: u8,
    /// Byte range within the revision's content.
    pub byte_range: (usize, usize),
    /// SHA-256 of the section's bytes.
    pub digest: Digest,
    pub text: String,
}

/// A section's place in a document, without its text.
#[derive(Clone, Debug, Serialize)]
pub struct SectionEntry {
    pub selector: String,
    pub heading: String,
    pub level: u8,
    pub byte_range: (usize, usize),
}

impl Knowledge {
    /// Reads a revision's content whole (sections need the whole document).
    pub(crate) fn revision_bytes(&self, a: &Artifact, rev: &Revision) -> Result<Vec<u8>> {
        if !rev.content_available {
            return Err(Error::NotFound(format!(
                "content of {}/{} revision {} (it was purged)",
                a.collection, a.name, rev.revision
            )));
        }
        let mut buf = Vec::with_capacity(rev.size as usize);
        self.store()
            .open_content(&rev.digest)?
            .read_to_end(&mut buf)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => {
                    Error::Store(kontextual_store::StoreError::Corrupted(format!(
                        "content of {}/{} revision {}: {e}",
                        a.collection, a.name, rev.revision
                    )))
                }
                _ => Error::io(format!("reading {}/{}", a.collection, a.name), e),
            })?;
        Ok(buf)
    }

    /// A revision's whole content (the current one by default) with its
    /// change record (media type, digest): for surfaces that send bytes.
    pub fn artifact_bytes(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        revision: Option<u64>,
    ) -> Result<(Revision, Vec<u8>)> {
        let whole = without_section(r);
        let a = self.artifact_show(caller, &whole)?;
        let rev = self.artifact_revision(caller, &whole, revision.unwrap_or(a.revision))?;
        let bytes = self.revision_bytes(&a, &rev)?;
        Ok((rev, bytes))
    }

    fn sections_of(&self, a: &Artifact, bytes: &[u8]) -> Result<(String, Vec<Section>)> {
        let (sectioner, text) = for_content(&a.artifact_type, bytes).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}/{} is {}{}, which has no sections (sections exist for markdown and HTML)",
                a.collection,
                a.name,
                if sectioner_for(&a.artifact_type).is_some() {
                    "compressed "
                } else {
                    ""
                },
                a.artifact_type
            ))
        })?;
        let secs = sectioner.sections(&text);
        Ok((text, secs))
    }

    /// The sections of an artifact's current revision (or `revision`).
    pub fn artifact_sections(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        revision: Option<u64>,
    ) -> Result<Vec<SectionEntry>> {
        let a = self.artifact_show(caller, &without_section(r))?;
        let rev = self.artifact_revision(caller, r, revision.unwrap_or(a.revision))?;
        let bytes = self.revision_bytes(&a, &rev)?;
        let (_, secs) = self.sections_of(&a, &bytes)?;
        Ok(secs
            .into_iter()
            .map(|s| SectionEntry {
                selector: s.selector,
                heading: s.heading,
                level: s.level,
                byte_range: (s.range.start, s.range.end),
            })
            .collect())
    }

    /// One section by selector: an exact heading path, or a unique last part.
    pub fn artifact_section(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        selector: &str,
        revision: Option<u64>,
    ) -> Result<SectionView> {
        let whole = without_section(r);
        let a = self.artifact_show(caller, &whole)?;
        if !a.is_live() && revision.is_none() {
            return Err(Error::NotFound(format!(
                "artifact {whole} (it is {}; ask for a --revision)",
                a.state
            )));
        }
        let rev = self.artifact_revision(caller, &whole, revision.unwrap_or(a.revision))?;
        let bytes = self.revision_bytes(&a, &rev)?;
        self.section_in(&a, &rev, &bytes, selector)
    }

    pub(crate) fn section_in(
        &self,
        a: &Artifact,
        rev: &Revision,
        bytes: &[u8],
        selector: &str,
    ) -> Result<SectionView> {
        let (text, secs) = self.sections_of(a, bytes)?;
        let s = find(&secs, selector).map_err(|candidates| {
            let r = format!("{}/{}", a.collection, a.name);
            if candidates.is_empty() {
                let known: Vec<&str> = secs.iter().take(12).map(|s| s.selector.as_str()).collect();
                Error::NotFound(format!(
                    "section #{selector} in {r} (its sections: {}{})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                    if secs.len() > known.len() {
                        ", …"
                    } else {
                        ""
                    }
                ))
            } else {
                Error::InvalidInput(format!(
                    "section #{selector} in {r} is ambiguous: {}; give the full heading path",
                    candidates.join(", ")
                ))
            }
        })?;
        let slice = &text.as_bytes()[s.range.clone()];
        Ok(SectionView {
            reference: format!("{}#{}", crate::artifact_ref(a), s.selector),
            artifact_id: a.id,
            revision: rev.revision,
            selector: s.selector.clone(),
            heading: s.heading.clone(),
            level: s.level,
            byte_range: (s.range.start, s.range.end),
            digest: Digest::of(slice),
            text: text[s.range.clone()].to_owned(),
        })
    }
}

pub(crate) fn without_section(r: &ArtifactRef) -> ArtifactRef {
    match r {
        ArtifactRef::Name {
            collection, name, ..
        } => ArtifactRef::Name {
            collection: collection.clone(),
            name: name.clone(),
            section: None,
        },
        ArtifactRef::IdSection { id, .. } => ArtifactRef::Id(*id),
        other => other.clone(),
    }
}

/// The readable text of a document or a part of it (a section's bytes):
/// markup removed where the format has markup (HTML), the text itself
/// otherwise.
pub(crate) fn readable(artifact_type: &str, raw: &str) -> String {
    match sectioner_for(artifact_type) {
        Some(s) => s.text_of(raw, 0..raw.len()),
        None => raw.to_owned(),
    }
}
