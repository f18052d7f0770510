#!/usr/bin/env bash
# The README tour on the embedded default: a fresh data directory, a
# collection, artifacts with revisions, a relationship, a delete, the
# integrity checks, then ingest, search, sections and a context package. Run from anywhere; leaves its store in ./kontextual-tour.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The dev profile by default: the binary `cargo test --workspace` builds, so
# the README's two set-up commands share one build (TOUR_PROFILE=release for
# the optimised, stripped binary). The build shows its progress.
profile="${TOUR_PROFILE:-dev}"
echo "building kontextual ($profile profile; the first build takes a few minutes)…" >&2
cargo build --profile "$profile" --manifest-path "$here/../Cargo.toml" -p kontextual
outdir="$profile"; [ "$profile" = dev ] && outdir=debug
k() { "${CARGO_TARGET_DIR:-$here/../target}/$outdir/kontextual" --data-dir "${TOUR_DIR:-./kontextual-tour}" "$@"; }
step() { printf '\n$ kontextual %s\n' "$*"; k "$@"; }

rm -rf "${TOUR_DIR:-./kontextual-tour}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/handbook/intro.md" "$work/intro.md"

step init
step collection create handbook --description "Team handbook"
step artifact put handbook/intro.md --file "$work/intro.md" --meta owner=docs
printf '\nNew: every change is a revision.\n' >> "$work/intro.md"
step artifact put handbook/intro.md --file "$work/intro.md"
step artifact put handbook/guides/setup.md --file "$here/handbook/guides/setup.md" --meta owner=ops
step artifact show handbook/intro.md
step artifact history handbook/intro.md
step artifact diff handbook/intro.md --from 1 --to 2
step relate handbook/intro.md references handbook/guides/setup.md
step relation list
step artifact delete handbook/guides/setup.md
step collection list
step audit verify
step verify
step db status

# Retrieval: ingest a tree, search it, address a section, build a context package.
step ingest "$here/handbook" --collection docs
step relate docs/runbook.html references docs/guides/deploy.md
step search "canary rollout"
step search "retry policy" --sections
step search canary --expand references
step artifact show docs/guides/deploy.md --sections
step artifact show "docs/guides/deploy.md#rollout/canary"
step context build --name deploy-brief --query "how do we deploy" --query "roll back" --budget 300
step context show deploy-brief --format markdown
step context verify deploy-brief
step index status

# Jobs and recovery: a background ingest run by a worker, its job, a repair.
job=$(k --quiet ingest "$here/handbook" --collection queued --background)
step job list
step worker --drain
step job show "$job"
step reindex --collection docs
step repair

# Export and snapshots: a governed package, validated, imported into a fresh store.
step export --collection docs --out "$work/docs.bag"
step package validate "$work/docs.bag"
step export --all --out "$work/snapshot.tar.zst"
restored() { printf '\n$ kontextual --data-dir restored %s\n' "$*"; "${CARGO_TARGET_DIR:-$here/../target}/$outdir/kontextual" --data-dir "$work/restored" "$@"; }
restored import "$work/snapshot.tar.zst"
restored verify
