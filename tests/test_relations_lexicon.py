"""Relations that need a lexicon (``describer.maps.lexicon``): English inflection, irregular
forms included, case changes told apart from plain copying, gendered word pairs."""

from __future__ import annotations

from describer.maps.relations import relation_facts

# --- lexicon relations: inflection, case, gender ------------------------------------------------


def test_irregular_inflections_are_found_from_the_lexicon() -> None:
    rows = [
        (" shrink", [" shrank", " x"]),
        (" stride", [" strode"]),
        (" mouse", [" mice"]),
        (" good", [" better"]),
    ]
    keys = {f.relation: f.rows for f in relation_facts(rows, min_rows=1, min_fraction=0.0)}
    assert (
        keys["inflection:past"] == 2
        and keys["inflection:plural"] == 1
        and keys["inflection:comparative"] == 1
    )
    back = relation_facts([(" shrank", [" shrink"]), (" mice", [" mouse"])], min_rows=1, min_fraction=0.0)
    assert {f.relation for f in back} >= {"inflection:lemma"}


def test_case_changes_are_told_apart_from_plain_copying() -> None:
    rows = [(" paris", [" PARIS"]), ("dog", ["DOG"]), (" cat", [" cat"])]
    facts = {f.relation: f for f in relation_facts(rows, min_rows=1, min_fraction=0.0)}
    assert facts["copy"].rows == 3 and facts["case:upper"].rows == 2
    assert facts["case:upper"].label == "the same word in upper case"
    titled = relation_facts([(" paris", [" Paris"]), (" rome", ["Rome"])], min_rows=1, min_fraction=0.0)
    assert "case:title" in {f.relation for f in titled}


def test_gendered_pairs_both_ways() -> None:
    rows = [(" king", [" queen"]), (" boy", [" girl", " x"]), (" uncle", [" aunt"])]
    (fact,) = [f for f in relation_facts(rows) if f.relation.startswith("gender:")]
    assert fact.relation == "gender:female" and fact.rows == 3
    back = [
        f
        for f in relation_facts([(" queen", [" king"]), (" girl", [" boy"])])
        if f.relation.startswith("gender")
    ]
    assert back[0].relation == "gender:male"


def test_lexicon_relations_do_not_fire_on_junk() -> None:
    rows = [
        ("ing", [" poll", "());"]),
        (" cart", ["ovi", " Hue"]),
        ("(", [" weary", " zn"]),
        (" tree", [" lamp"]),
    ]
    kinds = {f.relation.partition(":")[0] for f in relation_facts(rows, min_rows=1, min_fraction=0.0)}
    assert not kinds & {"inflection", "case", "gender"}


def test_opposites_beyond_adjectives_both_ways() -> None:
    rows = [
        (" begin", [" end"]),
        (" push", [" x", " pull"]),
        (" below", [" above"]),
        (" victory", [" defeat"]),
    ]
    (fact,) = [f for f in relation_facts(rows) if f.relation == "opposite"]
    assert fact.rows == 4 and "opposite" in fact.label


def test_an_operation_read_backwards_is_its_reverse_and_a_symmetric_one_is_itself() -> None:
    ops = [
        ("country_to_capital", [("France", "Paris"), ("Japan", "Tokyo")]),
        ("adj_antonym", [("cold", "hot")]),
    ]
    rows = [(" Paris", [" France"]), ("Tokyo", [" Japan", " x"])]
    (fact,) = [f for f in relation_facts(rows, ops) if f.relation.startswith("reverse:")]
    assert (
        fact.relation == "reverse:country_to_capital" and fact.label == "capital → country" and fact.rows == 2
    )
    both = relation_facts([(" hot", [" cold"]), (" cold", [" hot"])], ops)
    assert [f.rows for f in both if f.relation == "operation:adj_antonym"] == [2]
