from __future__ import annotations

import pytest

from aigc_studio.content.attributes import parse_attributes
from aigc_studio.content.requests import make_request
from aigc_studio.content.tasks import PLATFORMS, TASKS, advertisegen_source, get_task, target_length_range
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.metrics import METRICS

EAGLE_MR = "name[The Eagle], eatType[pub], area[riverside]"
GOOD_EAGLE = "The Eagle is a pub by the river."


def kinds(task_name: str, text: str, **fields) -> list[str]:
    request = make_request(task_name, **{"attributes": EAGLE_MR, **fields})
    return [violation.kind for violation in get_task(task_name).check(text, request)]


@pytest.mark.parametrize("task_name", list(TASKS))
def test_every_task_renders_the_e2e_mr_as_its_compact_source(task_name):
    request = make_request(task_name, attributes="name=The Eagle; eatType=pub; area=riverside")
    assert get_task(task_name).render_source(request) == EAGLE_MR


def test_chinese_source_is_advertisegen_form_with_joined_values_as_repeated_keys():
    request = make_request("ad-copy", attributes="类型#裤*风格#复古*风格#简约")
    source = get_task("ad-copy").render_source(request)
    assert source == "类型#裤*风格#复古*风格#简约"
    assert parse_attributes(source) == request.attributes


def test_source_format_option_renders_english_attributes_in_advertisegen_form():
    request = make_request("ad-copy", attributes=EAGLE_MR, source_format="advertisegen")
    assert get_task("ad-copy").render_source(request) == "name#The Eagle*eatType#pub*area#riverside"


def test_advertisegen_form_refuses_a_star_it_cannot_read_back():
    with pytest.raises(AigcError, match="cannot hold it"):
        advertisegen_source({"rating": "5*"})


@pytest.mark.parametrize("task_name", list(TASKS))
def test_every_instruction_prompt_states_the_whole_brief(task_name):
    request = make_request(task_name, attributes=EAGLE_MR, audience="young professionals", tone="playful",
                           keywords="riverside, pints", forbid="cheap", length=20)
    prompt = get_task(task_name).render_prompt(request)
    for expected in ("- name: The Eagle", "- area: riverside", "Audience: young professionals.", "Tone: playful.",
                     '"riverside", "pints"', 'Must not include: "cheap"', "Length: 15 to 25 words.", "Format: "):
        assert expected in prompt, (expected, prompt)


def test_prompts_leave_out_what_the_request_does_not_give():
    prompt = get_task("ad-copy").render_prompt(make_request("ad-copy", attributes=EAGLE_MR))
    assert "Audience" not in prompt and "Tone" not in prompt and "Must include" not in prompt
    assert "Length: 10 to 40 words." in prompt  # the task's default range


def test_chinese_prompt_is_written_in_chinese_with_character_lengths():
    request = make_request("product-description", attributes="类型#裤*风格#简约", keywords="显瘦", tone="温柔")
    prompt = get_task("product-description").render_prompt(request)
    assert prompt.startswith("你是一名资深营销文案") and "- 类型：裤" in prompt
    assert "必须原样包含：“显瘦”。" in prompt and "语气：温柔。" in prompt and "长度：80到250个字。" in prompt


def test_blog_draft_prompt_asks_for_title_outline_and_sections():
    prompt = get_task("blog-draft").render_prompt(make_request("blog-draft", attributes=EAGLE_MR))
    assert "'# '" in prompt and "'## Outline'" in prompt and "section per outline point" in prompt


def test_social_post_prompt_states_the_platform_limit_and_hashtags():
    request = make_request("social-post", attributes=EAGLE_MR, platform="x")
    prompt = get_task("social-post").render_prompt(request)
    assert "Platform: X (Twitter). At most 280 characters" in prompt and "End with 2 relevant hashtags" in prompt


def test_social_post_appends_keyword_and_name_hashtags_up_to_the_platform_count():
    request = make_request("social-post", attributes=EAGLE_MR, keywords="fast food, riverside", platform="x")
    assert get_task("social-post").finalize(f" {GOOD_EAGLE} ", request) == f"{GOOD_EAGLE} #FastFood #Riverside"
    instagram = make_request("social-post", attributes=EAGLE_MR, keywords="riverside", platform="instagram")
    assert get_task("social-post").finalize(GOOD_EAGLE, instagram).endswith("#Riverside #TheEagle")


def test_social_post_keeps_hashtags_the_model_wrote_and_closes_weibo_topics():
    request = make_request("social-post", attributes=EAGLE_MR, keywords="riverside")
    assert get_task("social-post").finalize("Pints by the river #RiverLife", request) == "Pints by the river #RiverLife"
    weibo = make_request("social-post", attributes="类型#裤*风格#简约", keywords="显瘦")
    assert get_task("social-post").finalize("这条裤子很显瘦。", weibo) == "这条裤子很显瘦。 #显瘦#"


def test_social_post_over_the_platform_limit_is_flagged_with_x_counting_chinese_double():
    x = PLATFORMS["x"]
    assert x.count_chars("裤子ab") == 6 and PLATFORMS["weibo"].count_chars("裤子ab") == 4
    long_post = "The Eagle is a pub by the river. " + "Come and enjoy it today with friends! " * 8
    assert "too_long" in kinds("social-post", long_post.strip(), platform="x", length=200)
    assert "too_long" not in kinds("social-post", long_post.strip(), platform="instagram", length=200)


def test_unknown_platform_lists_the_known_ones_and_other_tasks_refuse_a_platform():
    with pytest.raises(AigcError, match="unknown platform 'myspace'; choose one of: x, instagram"):
        get_task("social-post").validate(make_request("social-post", attributes=EAGLE_MR, platform="myspace"))
    with pytest.raises(AigcError, match="applies to social-post only"):
        get_task("ad-copy").validate(make_request("ad-copy", attributes=EAGLE_MR, platform="x"))


def test_check_flags_each_broken_hard_constraint():
    assert kinds("ad-copy", GOOD_EAGLE, keywords="pub") == []
    assert kinds("ad-copy", GOOD_EAGLE, keywords="pints") == ["missing_keyword"]
    assert kinds("ad-copy", GOOD_EAGLE + " Pub food, pub prices.", forbid="pub") == ["forbidden_word"]
    assert kinds("ad-copy", GOOD_EAGLE, length=4) == ["too_long"]
    assert kinds("ad-copy", "The Eagle is a coffee shop by the river.") == ["slot_error"]
    assert kinds("ad-copy", "") == ["format", "slot_error", "slot_error", "slot_error"]


def test_forbidden_word_message_counts_every_hit():
    request = make_request("ad-copy", attributes=EAGLE_MR, forbid="pub")
    messages = [str(v) for v in get_task("ad-copy").check(GOOD_EAGLE + " A pub!", request)]
    assert messages == ["forbidden word 'pub' x2"]


def test_email_subject_tolerates_missing_slots_but_not_contradicted_ones():
    assert kinds("email-subject", "Pints at The Eagle tonight") == []
    assert kinds("email-subject", "The Eagle coffee shop opens") == ["slot_error"]
    assert kinds("email-subject", "Pints at The Eagle\ntonight") == ["format"]


def test_blog_draft_needs_a_title_and_sections():
    draft = "# The Eagle by the river\n\n## Outline\n- the pub\n\n## The pub\nThe Eagle is a pub by the riverside."
    assert kinds("blog-draft", draft) == []
    assert kinds("blog-draft", "The Eagle is a pub by the riverside.") == ["format"]


def test_target_length_allows_a_quarter_either_way():
    assert target_length_range(20) == (15, 25)
    assert target_length_range(1) == (1, 2)


def test_unknown_task_lists_the_tasks():
    with pytest.raises(AigcError, match="unknown task 'poem'; choose one of: ad-copy, product-description, social-post"):
        get_task("poem")


@pytest.mark.parametrize("task_name", list(TASKS))
def test_task_weights_name_registered_metrics(task_name):
    assert set(get_task(task_name).metric_weights) <= set(METRICS)


def test_only_english_copy_tasks_have_a_bundled_default_model():
    assert get_task("ad-copy").default_model("en") == "e2e-copy"
    with pytest.raises(AigcError, match="pass --model"):
        get_task("ad-copy").default_model("zh")
    with pytest.raises(AigcError, match="social-post has no bundled default model"):
        get_task("social-post").default_model("en")
