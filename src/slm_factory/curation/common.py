"""What every curation stage shares: reading its pairs (or --data), the source chunks the pairs
were written from, and writing rejection records."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from slm_factory.pipeline import StageContext, StageError, pairs_input, stage_named
from slm_factory.records import Chunk, Document, QAPair, Rejection
from slm_factory.workspace import ARTIFACTS, ArtifactError, read_records

# Which command writes each pairs artifact: named in the message when one is missing.
_WRITTEN_BY = {"qa_alpaca": "generate", "qa_validated": "validate", "qa_scored": "score",
               "qa_train": "split", "qa_augmented": "augment", "qa_reviewed": "review"}


def input_pairs(ctx: StageContext, stage: str) -> list[QAPair]:
    """The pairs `stage` works on: the --data file when given, else the newest pairs artifact
    before it. A missing or malformed file raises StageError naming it."""
    data = ctx.options.get("data")
    if data:
        path = Path(data)
        if not path.is_file():
            raise StageError(f"--data {data}: no such file")
        try:
            return read_records(path, QAPair, f"--data {data}")
        except ArtifactError as error:
            raise StageError(str(error)) from None
    artifact = pairs_input(stage_named(stage), ctx.config)
    path = ctx.workspace.path(artifact)
    if not path.exists():
        raise StageError(f"{ARTIFACTS[artifact]} is missing; run `slm-factory {_WRITTEN_BY.get(artifact, 'generate')}` first")
    return read_records(path, QAPair, ARTIFACTS[artifact])


class Sources:
    """The parsed documents and the chunks the teacher saw, rebuilt the way `generate` cut them,
    so a pair's `chunk_id` finds its source text."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    @cached_property
    def documents(self) -> dict[str, Document]:
        path = self.ctx.workspace.path("parsed_documents")
        if not path.exists():
            return {}
        return {doc.id: doc for doc in read_records(path, Document, ARTIFACTS["parsed_documents"])}

    @cached_property
    def chunks(self) -> dict[str, Chunk]:
        from slm_factory.generation.qa import chunk_budget
        from slm_factory.parsing.chunking import chunk_document

        config = self.ctx.config
        return {
            chunk.id: chunk
            for document in self.documents.values()
            for chunk in chunk_document(document, chunk_budget(config), config.chunking.overlap_tokens)
        }

    def chunk_text(self, pair: QAPair) -> str:
        """The source the pair was written from; empty when it cannot be found (--data pairs from
        elsewhere, or documents parsed since)."""
        chunk = self.chunks.get(pair.chunk_id)
        return chunk.text if chunk is not None else ""

    def language(self, pair: QAPair) -> str:
        """The language of the pair's document (project.language when it is unknown)."""
        document = self.documents.get(pair.doc_id)
        return (document.language if document is not None and document.language else "") or self.ctx.config.project.language


def write_rejections(ctx: StageContext, artifact: str, rejections: list[Rejection]) -> None:
    ctx.workspace.write_json(artifact, [r.model_dump() for r in rejections])


def reason_counts(rejections: list[Rejection]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rejection in rejections:
        counts[rejection.rule] = counts.get(rejection.rule, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
