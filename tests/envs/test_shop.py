"""Tests of the WebShop-style ``shop`` environment (catalogue, reward, pages, splits, expert)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from itertools import combinations

import pytest

import empg.envs as envs
from empg.envs import ResetNeeded, check_env
from empg.envs.shop import lexicon as lx
from empg.envs.shop.catalog import Product, build_catalog, get_catalog
from empg.envs.shop.env import ShopEnv
from empg.envs.shop.goals import Goal, make_goal, split_products
from empg.envs.shop.measure import run_policy
from empg.envs.shop.reward import normalize_color, token_set_ratio, webshop_reward
from empg.envs.shop.search import get_index
from empg.errors import InputError

pytest.importorskip("bm25s", reason="needs: pip install 'empg[envs]'")

LIPSTICK_CAT = "Beauty & Personal Care › Makeup › Lips › Lipstick"


def _product(**kw) -> Product:
    base = dict(
        asin="B0TEST0001",
        title="Acme Long Lasting Lipstick - Cruelty Free",
        description="A lipstick by Acme. It is long lasting and cruelty free.",
        bullets=("LONG LASTING: yes", "CRUELTY FREE: yes"),
        attributes=("long lasting", "cruelty free"),
        options=(("color", ("red", "pink")),),
        price=20.0,
        category="beauty",
        product_category=LIPSTICK_CAT,
        query="lipstick",
        brand="Acme",
    )
    base.update(kw)
    return Product(**base)


def _goal(**kw) -> Goal:
    base = dict(
        split="test",
        index=0,
        asin="B0TEST0001",
        instruction="i need a long lasting and cruelty free lipstick in red color",
        category="beauty",
        query="lipstick",
        product_category=LIPSTICK_CAT,
        name_nouns=frozenset({"lipstick"}),
        attributes=("long lasting", "cruelty free"),
        options=(("color", "red"),),
        price_upper=30.0,
    )
    base.update(kw)
    return Goal(**base)


@pytest.fixture(scope="module")
def env() -> ShopEnv:
    return ShopEnv(split="test")


# -- fuzzy matching and reward --------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("red", "red", 100),
        ("dark red", "red", 100),  # a token subset scores 100, as in thefuzz
        ("long lasting", "Lasting, LONG", 100),
        ("iphone 14", "iphone 15", 89),  # 2 * 8 / (9 + 9) -> 88.9
        ("abcd", "abce", 75),  # 2 * 3 / (4 + 4)
        ("cat", "dog", 0),
        ("", "red", 0),
    ],
)
def test_token_set_ratio_golden(a, b, expected):
    assert token_set_ratio(a, b) == expected


def test_reward_all_match_is_one():
    d = webshop_reward(_product(), _goal(), {"color": "red"})
    assert d.reward == 1.0
    assert (d.r_type, d.n_att, d.n_option, d.r_price) == (1.0, 2, 1, True)
    assert d.query_match and d.category_match and d.title_score == 1.0


def test_reward_missing_attribute():
    d = webshop_reward(_product(), _goal(attributes=("long lasting", "vegan")), {"color": "red"})
    assert d.n_att == 1
    assert d.reward == pytest.approx(3 / 4)  # (1 att + 1 opt + price) / (2 + 1 + 1)


def test_reward_attribute_found_in_text_only():
    # "matte" is not an attribute but appears in the description: WebShop counts it
    p = _product(description="A matte lipstick.")
    d = webshop_reward(p, _goal(attributes=("matte",)), {"color": "red"})
    assert d.n_att == 1 and d.reward == 1.0


def test_reward_wrong_or_missing_option():
    assert webshop_reward(_product(), _goal(), {"color": "pink"}).reward == pytest.approx(3 / 4)
    assert webshop_reward(_product(), _goal(), {}).reward == pytest.approx(3 / 4)


def test_reward_color_normalised_and_size_exact():
    p = _product(options=(("color", ("dark red", "pink")), ("size", ("large", "x-large"))))
    g = _goal(options=(("color", "red"), ("size", "large")))
    assert webshop_reward(p, g, {"color": "dark red", "size": "large"}).reward == 1.0
    # "x-large" would fuzzy-match "large" at 100, but size is matched exactly
    d = webshop_reward(p, g, {"color": "dark red", "size": "x-large"})
    assert d.n_option == 1 and d.reward == pytest.approx(4 / 5)


def test_reward_over_price():
    d = webshop_reward(_product(price=30.01), _goal(), {"color": "red"})
    assert d.r_price is False and d.reward == pytest.approx(3 / 4)


def test_reward_wrong_type_is_zero():
    mascara = _product(
        title="Acme Long Lasting Mascara - Cruelty Free",
        query="mascara",
        product_category="Beauty & Personal Care › Makeup › Eyes › Mascara",
    )
    d = webshop_reward(mascara, _goal(), {"color": "red"})
    assert d.category_match and not d.query_match and d.title_score == 0.0
    assert d.r_type == 0.0 and d.reward == 0.0


def test_reward_type_factor_half_and_tenth():
    socks = _product(query="wool socks", product_category="Clothing › Socks › Wool Socks")
    five = frozenset({"wool", "throw", "blanket", "knit", "set"})
    g = _goal(query="wool throw blanket knit set", name_nouns=five, product_category="Home › X")
    d = webshop_reward(socks, g, {"color": "red"})
    assert d.title_score == pytest.approx(0.2) and d.r_type == 0.5 and d.reward == 0.5
    # same noun overlap but two shared category levels: full type factor
    g2 = _goal(query="x", name_nouns=five, product_category="Clothing › Socks › Blankets")
    assert webshop_reward(socks, g2, {"color": "red"}).r_type == 1.0
    eleven = five | {f"n{i}" for i in range(6)}
    g3 = _goal(query="x", name_nouns=eleven, product_category="Home › X")
    d3 = webshop_reward(socks, g3, {"color": "red"})
    assert d3.title_score == pytest.approx(1 / 11) and d3.r_type == 0.1
    assert d3.reward == pytest.approx(0.1)


def test_reward_option_count_is_capped():
    p = _product(options=(("color", ("red",)), ("style", ("red gloss",))))
    d = webshop_reward(p, _goal(), {"color": "red", "style": "red gloss"})
    assert d.n_option == 1 and d.reward == 1.0


# -- catalogue ------------------------------------------------------------------------------
def test_catalog_size_categories_and_fields():
    cat = get_catalog()
    assert len(cat) >= 1000
    assert cat.categories() == ["beauty", "electronics", "fashion", "grocery", "home"]
    assert len({p.asin for p in cat.products}) == len(cat)
    all_attributes = {a for c in lx.CATEGORIES for t in c.types for a in t.attributes}
    for p in cat.products:
        assert len(p.asin) == 10 and p.asin.startswith("B0")
        assert p.title and p.description and len(p.bullets) >= 3 and p.attributes
        assert p.options and all(len(v) >= 2 for _, v in p.options)
        assert 0 < p.price < 300
        assert set(p.attributes) <= all_attributes
    assert cat.index_of(cat.products[7].asin.lower()) == 7


def test_catalog_build_is_fast_and_cached():
    t0 = time.perf_counter()
    fresh = build_catalog(5)
    assert time.perf_counter() - t0 < 2.0
    assert get_catalog(0) is get_catalog(0)
    assert fresh.products != get_catalog(0).products


def test_options_are_unambiguous():
    """Within a type, labels are unique and non-size values never fuzzy-match each other;
    no offered value appears in its product's text (WebShop's fallback would count it)."""
    for ptype in (t for c in lx.CATEGORIES for t in c.types):
        values = [(g, v) for g, vs in ptype.options for v in vs]
        assert len({v for _, v in values}) == len(values), ptype.name
        for (ga, a), (gb, b) in combinations(values, 2):
            if ga == "size" and gb == "size":
                continue  # matched exactly
            assert token_set_ratio(normalize_color(a), normalize_color(b)) <= 85, (a, b)
    for p in get_catalog().products:
        text = " ".join((p.title, *p.bullets, p.description)).lower()
        for _, vs in p.options:
            assert not any(normalize_color(v) in text for v in vs), p.asin


_FINGERPRINT = """
import hashlib, json
from empg.envs.shop.catalog import get_catalog
from empg.envs.shop.goals import make_goal
from empg.envs.shop.search import get_index
c = get_catalog()
h = hashlib.sha256(repr(c.products).encode())
goals = [make_goal(c, s, i).instruction for s in ("train", "test") for i in range(20)]
h.update(json.dumps(goals).encode())
h.update(repr(get_index(c).search("sugar free gummy bears cherry")).encode())
print(h.hexdigest())
"""


def _local_fingerprint() -> str:
    c = get_catalog()
    h = hashlib.sha256(repr(c.products).encode())
    goals = [make_goal(c, s, i).instruction for s in ("train", "test") for i in range(20)]
    h.update(json.dumps(goals).encode())
    h.update(repr(get_index(c).search("sugar free gummy bears cherry")).encode())
    return h.hexdigest()


def test_catalog_goals_and_search_deterministic_across_processes():
    digests = {_local_fingerprint()}
    for hashseed in ("1", "777"):
        out = subprocess.run(
            [sys.executable, "-c", _FINGERPRINT],
            env={**os.environ, "PYTHONHASHSEED": hashseed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# -- goals and splits -----------------------------------------------------------------------
def test_splits_are_disjoint_and_cover_catalog():
    cat = get_catalog()
    sp = split_products(cat)
    assert [len(sp[s]) for s in ("train", "valid", "test")] == [1600, 200, 200]
    assert len(set(sp["train"]) | set(sp["valid"]) | set(sp["test"])) == len(cat)
    test_asins = {make_goal(cat, "test", i).asin for i in range(200)}
    train_asins = {make_goal(cat, "train", i).asin for i in range(1600)}
    assert len(test_asins) == 200 and not test_asins & train_asins


def test_goal_is_consistent_with_its_product():
    cat = get_catalog()
    for i in range(100):
        g = make_goal(cat, "valid", i)
        p = cat.products[cat.index_of(g.asin)]
        assert set(g.attributes) <= set(p.attributes) and 1 <= len(g.attributes) <= 3
        assert [grp for grp, _ in g.options] == [grp for grp, _ in p.options]
        assert all(v in dict(p.options)[grp] for grp, v in g.options)
        assert p.price <= g.price_upper <= p.price + 40 and g.price_upper % 10 == 0
        assert g.instruction.endswith(f"price lower than {g.price_upper:.2f} dollars")
        assert all(a in g.instruction for a in g.attributes)
        assert all(v in g.instruction for _, v in g.options)
        assert p.query in g.instruction
        assert webshop_reward(p, g, dict(g.options)).reward == 1.0


def test_reset_seed_picks_goal_of_split(env):
    _, info = env.reset(seed=3)
    assert info["task"] == make_goal(env.catalog, "test", 3).instruction
    assert info["task_type"] == make_goal(env.catalog, "test", 3).category
    assert info["admissible_actions"] == ["search[<query>]"]
    _, info_train = ShopEnv(split="train").reset(seed=3)
    assert info_train["task"] != info["task"]


def test_bad_constructor_arguments():
    with pytest.raises(InputError, match="split must be one of"):
        ShopEnv(split="dev")
    with pytest.raises(InputError, match="max_steps"):
        ShopEnv(max_steps=0)
    assert isinstance(envs.make("shop", split="valid"), ShopEnv)


# -- contract, pages, hostile input ---------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_check_env(split):
    check_env(ShopEnv(split=split), seeds=(0, 1, 7))


def _search(env: ShopEnv, query: str, seed: int = 0):
    env.reset(seed=seed)
    return env.step(f"search[{query}]")


def test_pagination(env):
    res = _search(env, "lipstick")
    results = env._state.results
    assert len(results) == 50  # exactly 50 lipsticks in the catalogue (one of 40 types)
    seen, first_obs = [], res.observation
    for page in range(5):
        adm = res.info["admissible_actions"]
        ids = [a for a in adm if a.startswith("click[b0")]
        assert len(ids) == 10
        assert ("click[< prev]" in adm) == (page > 0)
        assert ("click[next >]" in adm) == (page < 4)
        assert f"page {page + 1} of 5" in res.observation
        seen += ids
        if page < 4:
            res = env.step("click[next >]")
    assert len(set(seen)) == 50
    assert seen == [f"click[{env.catalog.products[i].asin.lower()}]" for i in results]
    last = res.observation
    bad = env.step("click[next >]")
    assert not bad.info["action_valid"] and bad.observation.endswith(last)
    res = env.step("click[< prev]")
    assert "page 4 of 5" in res.observation
    item = env.step(seen[32])  # a product of page 4
    assert item.info["page"] == "item"
    back = env.step("click[< prev]")
    assert back.observation == res.observation
    for _ in range(3):
        back = env.step("click[< prev]")
    assert back.observation == first_obs


def test_item_page_options_description_and_buy(env):
    res = _search(env, "sugar free gummy bears", seed=5)
    asin = res.info["admissible_actions"][-1]
    res = env.step(asin)
    product = env.catalog.products[env._state.item]
    adm = res.info["admissible_actions"]
    values = [v for _, vs in product.options for v in vs]
    assert adm == [
        "click[back to search]",
        "click[< prev]",
        "click[description]",
        "click[features]",
        *[f"click[{v}]" for v in values],
        "click[buy now]",
    ]
    desc = env.step("click[description]")
    assert product.description in desc.observation
    assert desc.info["admissible_actions"] == ["click[back to search]", "click[< prev]"]
    assert env.step("click[< prev]").info["page"] == "item"
    feats = env.step("  CLICK[ Features ] ")  # verb and label are case/space-insensitive
    assert all(b in feats.observation for b in product.bullets)
    env.step("click[< prev]")
    env.step(f"click[{values[0]}]")
    env.step(f"click[{values[-1]}]")
    chosen = {g: vs[0] for g, vs in product.options}
    chosen[product.options[-1][0]] = values[-1]
    res = env.step("click[buy now]")
    expected = webshop_reward(product, env.goal, chosen)
    assert res.terminated and not res.truncated
    assert res.reward == expected.reward
    assert res.info["won"] == (expected.reward == 1.0)
    assert res.info["reward_details"]["options"] == chosen
    assert res.info["reward_details"]["asin"] == product.asin
    with pytest.raises(ResetNeeded):
        env.step("click[buy now]")


HOSTILE = [
    "",
    "   ",
    "x" * (1 << 20),
    "search[" + "y" * (1 << 20) + "]",
    "\udcff\x00\u202e\U0001f600",
    "__import__('os').system('ls')",
    "<script>alert(1)</script>",
    "click[<b>]]]][[[",
    "click[]",
    "click[buy now",
    "buy now",
    "click[b0zzzzzzzz]",
    "search[lipstick]",  # search is off the results page
    "click[next >]\nclick[buy now]",
]


def test_hostile_actions_keep_page(env):
    page = _search(env, "wool socks").observation
    for action in HOSTILE:
        res = env.step(action)
        assert res.observation.startswith("Invalid action: "), action[:30]
        assert res.observation.endswith(page)
        assert len(res.observation) < len(page) + 200
        assert res.reward == 0.0 and not res.terminated
        assert res.info["action_valid"] is False
        if res.truncated:
            page = _search(env, "wool socks").observation


def test_a_query_is_searched_as_it_is_shown(env):
    """A zero-width space is not shown; it must not split the word the page shows either."""
    env.reset(seed=0)
    plain = env.step("search[lipstick]").observation
    env.reset(seed=0)
    hidden = env.step("search[lip\u200bstick]").observation
    assert "No products match" not in plain and hidden == plain
    for space in ("\t", "\u00a0", "\u2009"):  # a tab, a no-break and a thin space
        env.reset(seed=0)
        spaced = env.step(f"search[wool{space}socks]").observation
        env.reset(seed=0)
        assert spaced == env.step("search[wool socks]").observation, repr(space)


def test_empty_and_unknown_queries(env):
    env.reset(seed=0)
    res = env.step("search[ \u202e ]")
    assert res.observation.startswith("Invalid action: the search query is empty")
    res = env.step("search[qqqq zzzz]")
    assert res.info["action_valid"] and 'No products match "qqqq zzzz"' in res.observation
    assert res.info["admissible_actions"] == ["click[back to search]"]
    res = env.step("search[<query>]")  # the literal template is an ordinary (odd) query
    assert not res.info["action_valid"]  # ... but not here: we are on a results page
    env.step("click[back to search]")
    res = env.step("search[<query>]")
    assert res.info["action_valid"] and res.info["page"] == "results"


def test_truncates_at_fifteen_steps():
    env = ShopEnv(split="valid")
    env.reset(seed=0)
    for t in range(15):
        res = env.step("click[nothing]")
        assert res.truncated == (t == 14) and not res.terminated
    with pytest.raises(ResetNeeded):
        env.step("search[x]")


# -- policies -------------------------------------------------------------------------------
def test_expert_solves_heldout_goals(env):
    stats = run_policy(env, "expert", 200)
    assert stats.success_rate >= 0.95  # measured: 200/200
    assert stats.steps <= 200 * 15
    env.reset(seed=0)
    assert env.expert_thought()


def test_expert_recovers_from_detour(env):
    """A detour to an unrelated product costs steps; the expert still finishes in 15."""
    env.reset(seed=11)
    assert env.goal.query != "hdmi cable"
    res = env.step("search[hdmi cable]")
    first = next(a for a in res.info["admissible_actions"] if a.startswith("click[b0"))
    env.step(first)
    env.step("click[description]")
    for _ in range(12):
        res = env.step(env.expert_action())
        if res.terminated or res.truncated:
            break
    assert res.terminated and res.info["won"]


def test_random_policies_rarely_succeed(env):
    rand = run_policy(env, "random", 500)
    instr = run_policy(env, "random-instr", 500)
    # measured on 1,000 test goals: 0.0 and 0.011
    assert rand.success_rate <= 0.02
    assert instr.success_rate <= 0.05
    assert rand.steps_per_second > 500  # measured 7,000-14,000 on one shared core


def test_info_is_json_serialisable(env):
    _, info = env.reset(seed=2)
    json.dumps(info)
    while True:
        res = env.step(env.expert_action())
        json.dumps(res.info)
        if res.terminated or res.truncated:
            break
    assert res.info["reward_details"]["reward"] == 1.0
