from aigc_studio.content.delexicalize import delexicalize, placeholder, relexicalize

MR = "name[The Eagle], eatType[pub], near[Burger King]"


def test_delexicalize_replaces_values_in_source_and_target():
    source, target, values = delexicalize(MR, "The eagle is a pub near Burger King.", ["name", "near"])
    assert source == "name[__name__], eatType[pub], near[__near__]"
    assert target == "__name__ is a pub near __near__."
    assert values == {"__name__": "The Eagle", "__near__": "Burger King"}


def test_relexicalize_inverts_delexicalize_for_generated_text():
    _, _, values = delexicalize(MR, None, ["name", "near"])
    assert relexicalize("__name__ is a pub near __near__.", values) == "The Eagle is a pub near Burger King."


def test_longest_value_is_replaced_first():
    source, target, _ = delexicalize("name[Café Adriatic], near[Café]", "Café Adriatic is near Café.", ["name", "near"])
    assert target == "__name__ is near __near__."


def test_sources_in_other_forms_pass_through_unchanged():
    assert delexicalize("类型#裤*颜色#白色", "白色的裤子", ["name"]) == ("类型#裤*颜色#白色", "白色的裤子", {})
    assert delexicalize("name[broken", "x", ["name"]) == ("name[broken", "x", {})


def test_missing_slot_leaves_the_record_alone():
    assert delexicalize("eatType[pub]", "A pub.", ["name"]) == ("eatType[pub]", "A pub.", {})
    assert placeholder("customer rating") == "__customer_rating__"
