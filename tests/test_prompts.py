"""Prompt templates: rendering, hashing, user files, and errors that name the file and line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import prompts
from describer.errors import HeadmapsError
from store.labels import CATEGORIES, CATEGORY_MEANINGS


def evidence(**overrides: object) -> dict:
    base = {
        "model": "tiny",
        "layer": 3,
        "head": 1,
        "n_layers": 18,
        "n_heads": 4,
        "salient": [
            {"token": " Paris", "amplification": 4.2, "mappings": [{"token": " France", "logit": 9.1}]},
            {"token": "\n", "amplification": 3.0, "mappings": [{"token": ' "q"', "logit": 2.0}]},
        ],
        "operations": [
            {
                "name": "country_to_capital",
                "category": "knowledge",
                "score": 0.625,
                "suppression": 0.0,
                "k": 10,
            }
        ],
        "categories": dict(CATEGORY_MEANINGS),
    }
    return base | overrides


def test_builtins_exist_and_are_package_data() -> None:
    assert {"salient", "salient_evidence"} <= set(prompts.builtin_names())


@pytest.mark.parametrize("name", ["salient", "salient_evidence"])
def test_render_records_name_and_source_hash(name: str) -> None:
    rendered = prompts.render(name, **evidence())
    source = (Path(prompts.__file__).parent / "templates" / f"{name}.j2").read_bytes()
    assert rendered.name == name and rendered.sha256 == hashlib.sha256(source).hexdigest()
    text = rendered.text
    # Tokens are JSON strings: leading spaces and newlines stay visible.
    assert '" Paris" -> " France"' in text and '"\\n" -> " \\"q\\""' in text
    for category in CATEGORIES:
        assert category in text
    for field in ("reasoning", "inputs", "pattern", "unclear", "category", "tags"):
        assert f'"{field}"' in text
    assert "Unclear" in text
    assert prompts.render(name, **evidence()).text == text  # deterministic


def test_evidence_variant_adds_position_and_scores() -> None:
    text = prompts.render("salient_evidence", **evidence()).text
    assert "head 1 of layer\n3 (layers are numbered 0 to 17, each with 4 heads) of tiny" in text
    assert "country_to_capital (knowledge): 0.62, suppression 0.00" in text
    plain = prompts.render("salient", **evidence()).text
    assert "country_to_capital" not in plain and "layer" not in plain.split("Pick")[0]
    none = prompts.render("salient_evidence", **evidence(operations=[])).text
    assert "No operation that the analyzer tests scores above 0.05" in none


def test_missing_evidence_is_an_error_naming_file_and_line() -> None:
    bad = evidence()
    del bad["n_layers"]
    with pytest.raises(HeadmapsError) as info:
        prompts.render("salient_evidence", **bad)
    message = str(info.value)
    assert "salient_evidence.j2:6:" in message and "n_layers" in message and "\n" not in message


def test_user_template_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.j2"
    path.write_text("L{{ layer }}H{{ head }} {{ salient|map(attribute='token')|map('tok')|join(' ') }}\n")
    rendered = prompts.render(str(path), **evidence())
    assert rendered.text == 'L3H1 " Paris" "\\n"\n'
    assert rendered.name == str(path.resolve())
    assert rendered.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text("changed {{ layer }}\n")
    assert prompts.render(str(path), **evidence()).sha256 != rendered.sha256


def test_user_template_undefined_variable_names_line(tmp_path: Path) -> None:
    path = tmp_path / "typo.j2"
    path.write_text("line one\nline two\n{{ salient_tokens }}\n")
    with pytest.raises(HeadmapsError, match=r"typo\.j2:3: 'salient_tokens' is undefined"):
        prompts.render(str(path), **evidence())


def test_user_template_attribute_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "attr.j2"
    path.write_text("ok\n{% for s in salient %}\n{{ s.tokn }}\n{% endfor %}\n")
    with pytest.raises(HeadmapsError, match=r"attr\.j2:3: .*tokn"):
        prompts.render(str(path), **evidence())


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.j2"
    path.write_text("fine\n{% for s in salient %}\n{{ s.token }\n")
    with pytest.raises(HeadmapsError, match=r"broken\.j2:3: ") as info:
        prompts.load(str(path))
    assert "\n" not in str(info.value)


def test_unknown_prompt_lists_builtins() -> None:
    with pytest.raises(HeadmapsError, match="unknown prompt 'nope'.*salient, salient_evidence"):
        prompts.load("nope")


def test_rendered_prompt_parses_back_with_the_schema_example() -> None:
    # The answer skeleton in the prompt names exactly the schema's fields.
    from describer.llm.answer import HeadDescription

    text = prompts.render("salient", **evidence()).text
    skeleton = text[text.index('{"reasoning"') :]
    keys = [k for k in HeadDescription.model_fields]
    assert all(f'"{k}"' in skeleton for k in keys)
    assert json.dumps(CATEGORIES[0]).strip('"') in skeleton
