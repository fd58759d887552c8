"""HyperionEmbedding against the mock provider: batching, the LRU, spend, audit and refusal."""

from __future__ import annotations

import pytest

from hyperion_core import BudgetExceededError, Gateway, InvalidKeyError
from hyperion_core.mock_provider.embeddings import embed
from hyperion_li import HyperionEmbedding

TEXTS = [f"document number {i} about topic {i % 3}" for i in range(7)]


def upstream(mock, dep: str) -> int:
    return mock.stats().get(dep, {}).get("requests", 0)


async def test_batched_cached_and_identical_to_the_provider(li_config, mock):
    setup = li_config()
    dep = setup.deps["embeddings"]
    emb = HyperionEmbedding(config=setup.config, embed_batch_size=3)
    vectors = emb.get_text_embedding_batch(TEXTS)
    assert upstream(mock, dep) == 3  # 7 texts, 3 per request
    assert vectors[0] == pytest.approx(embed(TEXTS[0]))  # the provider's vectors, in order
    assert [len(v) for v in vectors] == [256] * 7

    again = await emb.aget_text_embedding_batch(TEXTS + TEXTS[:2])
    assert again[:7] == vectors and upstream(mock, dep) == 3  # every text was cached
    assert emb.get_query_embedding(TEXTS[3]) == vectors[3]
    assert await emb.aget_query_embedding("a brand new question") == pytest.approx(embed("a brand new question"))
    assert upstream(mock, dep) == 4
    dupes = emb._get_text_embeddings(["same text", "same text", "same text"])
    assert dupes[0] == dupes[2] and upstream(mock, dep) == 5  # duplicates in one batch are sent once
    assert emb.cache_info() == {"hits": 12, "sent": 9, "size": 9}  # 9 + 1 + 2 duplicates

    small = HyperionEmbedding(config=setup.config, cache_size=2)
    small.get_text_embedding_batch(TEXTS[:4])
    small.get_text_embedding_batch(TEXTS[:4])
    assert small.cache_info() == {"hits": 2, "sent": 6, "size": 2}  # kept the 2 most recent
    off = HyperionEmbedding(config=setup.config, cache_size=0)
    off.get_text_embedding(TEXTS[0])
    off.get_text_embedding(TEXTS[0])
    assert off.cache_info() == {"hits": 0, "sent": 2, "size": 0}


async def test_spend_and_audit_per_request(li_config, mock):
    setup = li_config(governance={}, audit=True)
    gw = Gateway(setup.config)
    key, rec = await gw.keys.create("indexer", team="search")
    emb = HyperionEmbedding(gateway=gw, virtual_key=key, embed_batch_size=4)
    await emb.aget_text_embedding_batch(TEXTS)
    emb.get_text_embedding_batch(TEXTS + ["one more text"])  # sync: one request for the new text
    (row,) = await gw.spend_report("route")
    assert row.group == "embeddings" and row.requests == 3 and row.cost_usd > 0
    assert row.prompt_tokens == mock.stats()[setup.deps["embeddings"]]["prompt_tokens"]
    (by_key,) = await gw.spend_report("key")
    assert by_key.group == rec.key_id
    await gw.audit.aflush()
    events = await gw.audit.query(limit=10)
    assert [e.outcome for e in events] == ["ok"] * 3
    assert {e.route for e in events} == {"embeddings"} and {e.team for e in events} == {"search"}
    with pytest.raises(InvalidKeyError):
        await HyperionEmbedding(gateway=gw, virtual_key=key[:-2] + "zz").aget_text_embedding("x")
    await gw.aclose()
    gw.close()


async def test_budget_refuses_before_sending(li_config, mock):
    setup = li_config(governance={"budgets": [{"scope": "key", "period": "daily", "limit_usd": 1e-12}]})
    gw = Gateway(setup.config)
    key, _ = await gw.keys.create("broke")
    emb = HyperionEmbedding(gateway=gw, virtual_key=key)
    with pytest.raises(BudgetExceededError):
        await emb.aget_text_embedding("this costs money")
    with pytest.raises(BudgetExceededError):
        emb.get_text_embedding("so does this")
    assert upstream(mock, setup.deps["embeddings"]) == 0
    await gw.aclose()
    gw.close()
