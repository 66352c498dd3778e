"""Graders score one answer against one reference; this table names them and picks them.

Each grader is a small pure function `(output, reference) -> float` in its own module; the
table wraps them all into one batch shape, `(prompts, outputs, references) -> scores`, because
two of them need more than one pair at a time (the embedding model encodes in batches, the judge
reads the conversation).

| name        | scores                                             | needs references that are |
|-------------|----------------------------------------------------|---------------------------|
| exact       | 1 if equal (outer whitespace ignored)              | anything                  |
| normalized  | 1 if equal after case/punctuation/space folding    | anything                  |
| json_valid  | 1 if the answer parses as JSON                     | anything                  |
| json_equal  | 1 if the same JSON value, key order ignored        | JSON                      |
| regex       | 1 if the reference's /PATTERN/ is found            | /PATTERN/FLAGS            |
| token_f1    | word-overlap F1 (SQuAD)                            | anything                  |
| rouge_l     | longest-common-subsequence F (ROUGE-L)             | anything                  |
| embedding   | cosine of MiniLM sentence embeddings               | anything                  |
| judge       | 1 if a judge model says CORRECT (opt-in)           | anything                  |
| mod:func    | whatever your function returns                     | anything                  |

`auto_grader_names` picks from the references alone: all patterns → regex; all JSON objects or
arrays → json_valid + json_equal; all short (at most 4 words, one line) → exact + normalized;
otherwise free text → token_f1 + rouge_l + embedding. The judge is never picked automatically: it
costs a request per example.

OpenAI's grader objects (string_check, text_similarity, python, score_model, label_model, multi)
are the other kind: a JSON object that reads the answer and the whole dataset line through
templates. They live in `objects.py` (the shapes) and `grading.py` (running them), and serve
`tunery eval --grader`, `tunery compare --grader`, `tunery grade` and reinforcement fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tunery.errors import TuneryError
from tunery.graders.custom import is_custom_spec, load_custom_grader
from tunery.graders.exact import exact_match
from tunery.graders.json_match import json_equal, json_valid, parse_json
from tunery.graders.normalized import normalized_match
from tunery.graders.overlap import rouge_l, token_f1
from tunery.graders.regex import is_regex_reference, regex_match

BatchScore = Callable[[list[list[dict]], list[str], list[str]], list[float]]
LABEL_MAX_WORDS = 4


@dataclass(frozen=True)
class Grader:
    name: str
    score: BatchScore  # (prompts, outputs, references) -> one score per example
    applies: Callable[[str], bool] = lambda reference: True
    needs: str = "anything"  # what `applies` checks, for the error message
    # OpenAI grader objects read the whole data line instead: (items, outputs) -> scores
    score_items: Callable[[list[dict], list[str]], list[float]] | None = None


def is_object_spec(name: str) -> bool:
    """A grader given as a JSON file holding an OpenAI grader object (`--grader grader.json`)."""
    return name.endswith(".json")


def object_grader(path: str) -> Grader:
    """The OpenAI grader object in `path` as a Grader; a sample it fails on scores 0.

    Raises:
        TuneryError: the file is missing or not a valid grader.
    """
    from tunery.graders.grading import Grading
    from tunery.graders.objects import load_grader

    grader = load_grader(path)
    Grading(grader).close()  # a model grader without an endpoint fails here, before generating

    def score_items(items: list[dict], outputs: list[str]) -> list[float]:
        with Grading(grader) as grading:
            grading.check()
            return [r.reward for r in grading.grade_many(outputs, items)]

    def no_items(prompts, outputs, references):
        raise TypeError("an OpenAI grader object reads whole data lines (score_items)")

    return Grader(grader.name, no_items, score_items=score_items)


def _each(function: Callable[[str, str], float]) -> BatchScore:
    return lambda prompts, outputs, references: [function(o, r) for o, r in zip(outputs, references, strict=True)]


def _embedding(prompts, outputs, references):
    from tunery.graders.embedding import embedding_similarities

    return embedding_similarities(outputs, references)


def _judge(prompts, outputs, references):
    from tunery.graders.judge import judge_config_from_env, judge_scores

    return judge_scores(prompts, outputs, references, judge_config_from_env())


BUILTIN: dict[str, Grader] = {
    grader.name: grader
    for grader in [
        Grader("exact", _each(exact_match)),
        Grader("normalized", _each(normalized_match)),
        Grader("json_valid", _each(json_valid)),
        Grader("json_equal", _each(json_equal), lambda r: parse_json(r)[0], "JSON"),
        Grader("regex", _each(regex_match), is_regex_reference, "written as /PATTERN/FLAGS"),
        Grader("token_f1", _each(token_f1)),
        Grader("rouge_l", _each(rouge_l)),
        Grader("embedding", _embedding),
        Grader("judge", _judge),
    ]
}


def _is_json_document(reference: str) -> bool:
    ok, value = parse_json(reference)
    return ok and isinstance(value, (dict, list))


def _is_label(reference: str) -> bool:
    text = reference.strip()
    return "\n" not in text and len(text.split()) <= LABEL_MAX_WORDS


def auto_grader_names(references: Sequence[str]) -> list[str]:
    """The graders that suit these references (see the module docstring for the rules).

    >>> auto_grader_names(["billing.refund", "other"]), auto_grader_names(['{"a": 1}', "[2]"])
    (['exact', 'normalized'], ['json_valid', 'json_equal'])
    >>> auto_grader_names(["/^\\\\d+$/"]), auto_grader_names(["a b c d e", "x"])
    (['regex'], ['token_f1', 'rouge_l', 'embedding'])
    """
    if references and all(is_regex_reference(r) for r in references):
        return ["regex"]
    if references and all(_is_json_document(r) for r in references):
        return ["json_valid", "json_equal"]
    if references and all(_is_label(r) for r in references):
        return ["exact", "normalized"]
    return ["token_f1", "rouge_l", "embedding"]


def resolve_graders(
    names: Sequence[str] | None, references: Sequence[str], where: Sequence[str]
) -> tuple[list[Grader], dict[str, str]]:
    """Turn grader names (None: choose automatically) into graders, and say which were skipped.

    Args:
        names: built-in names or `module:function` specs.
        references: every reference, to check that each chosen grader can judge all of them.
        where: a `file:line` for each reference, for error messages.

    Returns:
        (graders to run, {skipped name: why}); the judge is skipped when no endpoint is configured.

    Raises:
        TuneryError: an unknown name, a custom grader that cannot be loaded, or a grader that
            cannot judge some reference (the message names the first such line).
    """
    from tunery.graders.judge import SKIPPED_MESSAGE, judge_config_from_env

    chosen = list(names) if names else auto_grader_names(references)
    graders, skipped = [], {}
    for name in dict.fromkeys(chosen):  # drop repeats, keep order
        if is_object_spec(name):
            graders.append(object_grader(name))
            continue
        if is_custom_spec(name):
            graders.append(Grader(name, _each(load_custom_grader(name))))
            continue
        if name not in BUILTIN:
            raise TuneryError(
                f"unknown grader {name!r}",
                hint=f"choose from {', '.join(BUILTIN)}, or give your own as module:function",
            )
        if name == "judge" and judge_config_from_env() is None:
            skipped[name] = SKIPPED_MESSAGE
            continue
        grader = BUILTIN[name]
        for reference, place in zip(references, where, strict=True):
            if not grader.applies(reference):
                raise TuneryError(
                    f"grader {name!r} needs references {grader.needs}, but the reference at {place} "
                    f"is {reference[:60]!r}",
                    hint="choose graders that fit the data with --graders, or leave it out to choose automatically",
                )
        graders.append(grader)
    if not graders:
        raise TuneryError(
            "no grader is left to run: " + "; ".join(skipped.values()),
            hint="add a grader that needs no configuration, e.g. --graders exact,token_f1",
        )
    return graders, skipped
