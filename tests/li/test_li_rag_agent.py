"""LlamaIndex end to end on Hyperion, against the mock provider over HTTP: a RAG query engine, a
function-calling agent (tool loop, failover between its steps), streaming, budget refusal."""

from __future__ import annotations

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

from hyperion_core import BudgetExceededError, Gateway
from hyperion_core.mock_provider import answer_for
from hyperion_li import HyperionBudgetEvent, HyperionEmbedding, HyperionLLM, HyperionRoutingEvent

DOCS = [
    Document(text="The falcon observatory stands in Porto, on a hill above the Douro river.", doc_id="porto"),
    Document(text="Lisbon has a famous yellow tram, number 28, that climbs through Alfama.", doc_id="lisbon"),
    Document(text="Madrid's Prado museum holds paintings by Velazquez and Goya.", doc_id="madrid"),
    Document(text="Berlin's television tower is the tallest structure in Germany.", doc_id="berlin"),
    Document(text="Vienna is known for coffee houses, waltzes and the state opera.", doc_id="vienna"),
]
QUESTION = "Which city has the falcon observatory?"

# LlamaIndex's workflow engine inspects agents with inspect.getmembers (pydantic deprecation noise, not ours)
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


def build_index(setup) -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(DOCS, embed_model=HyperionEmbedding(config=setup.config))


async def test_rag_query_engine_on_settings(li_config, mock, settings_guard):
    setup = li_config()
    Settings.llm = HyperionLLM(model="chat", config=setup.config)
    Settings.embed_model = HyperionEmbedding(model_name="embeddings", config=setup.config, embed_batch_size=2)
    index = VectorStoreIndex.from_documents(DOCS)  # embeds through Settings.embed_model
    emb_requests = mock.stats()[setup.deps["embeddings"]]["requests"]
    assert emb_requests == 3  # 5 documents, 2 per request

    engine = index.as_query_engine(similarity_top_k=1)  # answers through Settings.llm
    response = engine.query(QUESTION)
    (hit,) = response.source_nodes
    assert hit.node.ref_doc_id == "porto"  # the right document was retrieved
    answer = str(response)
    assert answer.startswith("Mock answer to: ")  # the mock answered ...
    assert "falcon observatory stands in Porto" in answer and QUESTION in answer  # ... a prompt with that context
    assert mock.stats()[setup.deps["primary"]]["requests"] == 1

    aresponse = await engine.aquery(QUESTION)
    assert str(aresponse) == answer and aresponse.source_nodes[0].node.ref_doc_id == "porto"
    # the question's embedding was cached: the async query sent no embedding request
    assert mock.stats()[setup.deps["embeddings"]]["requests"] == emb_requests + 1


async def test_streaming_query_engine(li_config, mock):
    setup = li_config()
    index = build_index(setup)
    llm = HyperionLLM(model="chat", config=setup.config)
    engine = index.as_query_engine(llm=llm, similarity_top_k=1, streaming=True)
    streamed = engine.query(QUESTION)
    tokens = list(streamed.response_gen)
    assert len(tokens) > 10 and "".join(tokens).startswith("Mock answer to: Context information")
    assert streamed.source_nodes[0].node.ref_doc_id == "porto"

    astreamed = await engine.aquery(QUESTION)
    atokens = [t async for t in astreamed.async_response_gen()]
    assert "".join(atokens) == "".join(tokens)
    assert mock.stats()[setup.deps["primary"]]["streams"] == 2


def magic_function(input: int) -> int:
    """Applies a magic function to an input."""
    return input + 2


async def test_function_agent_calls_a_tool_in_a_loop(li_config, mock, recorder):
    setup = li_config()
    llm = HyperionLLM(model="chat", config=setup.config)
    q = "What is the value of magic_function(3)? Use the tool."
    # first step: call the tool; after the tool result the mock answers "Tool result: ..."
    mock.script("magic_function", tool_calls=[{"name": "magic_function", "arguments": {"input": 3}}], times=1)
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=magic_function)], llm=llm,
                          system_prompt="Use the tools you are given.")
    handler = agent.run(user_msg=q)
    results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    out: AgentOutput = await handler
    (call,) = results
    assert call.tool_name == "magic_function" and call.tool_kwargs == {"input": 3} and call.tool_output.content == "5"
    assert out.response.content == "Tool result: 5"
    assert [e.deployment for e in recorder.of(HyperionRoutingEvent)] == ["primary", "primary"]
    assert mock.stats()[setup.deps["primary"]]["streams"] == 2  # the agent streams each step


async def test_failover_in_the_middle_of_an_agent_run(li_config, mock):
    setup = li_config()
    llm = HyperionLLM(model="chat", config=setup.config)
    primary = setup.deps["primary"]

    def get_weather(city: str) -> str:
        """The current weather in a city."""
        mock.fault(primary, kind="server_error")  # the primary goes down between the agent's steps
        return f"Sunny and 21C in {city}"

    mock.script("weather", tool_calls=[{"name": "get_weather", "arguments": {"city": "Lisbon"}}], times=1)
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=get_weather)], llm=llm)
    out = await agent.run(user_msg="What's the weather in Lisbon?")
    assert out.response.content == "Tool result: Sunny and 21C in Lisbon"  # the run completed ...
    raw = out.raw  # ... on the backup (Anthropic wire), and the response metadata says so
    assert raw["deployment"] == "backup" and raw["failed_over"]
    assert [(a["deployment"], a["outcome"], a["status"]) for a in raw["attempts"]] == [
        ("primary", "error", 500), ("backup", "ok", None)]
    assert mock.stats()[setup.deps["backup"]]["by_wire"] == {"anthropic": 1}


async def test_budget_refusal_inside_a_query_engine(li_config, mock, recorder, tmp_path):
    setup = li_config(governance={"budgets": [{"scope": "team", "id": "interns", "period": "daily", "limit_usd": 1e-7}]},
                      audit=True)
    gw = Gateway(setup.config)
    key, _ = await gw.keys.create("intern", team="interns")
    index = VectorStoreIndex.from_documents(DOCS, embed_model=HyperionEmbedding(gateway=gw))
    engine = index.as_query_engine(llm=HyperionLLM(model="chat", gateway=gw, virtual_key=key), similarity_top_k=1)
    with pytest.raises(BudgetExceededError) as ei:
        await engine.aquery(QUESTION)
    assert "team 'interns' daily budget" in str(ei.value) and ei.value.limit == 1e-7
    assert mock.stats().get(setup.deps["primary"], {}).get("requests", 0) == 0  # refused before any call
    (event,) = recorder.of(HyperionBudgetEvent)
    assert event.decision == "refused" and event.budget and event.source == "hyperion"
    await gw.audit.aflush()
    rows = await gw.audit.query(limit=20)
    refused = [r for r in rows if r.outcome == "budget_exceeded"]
    assert len(refused) == 1 and refused[0].route == "chat" and refused[0].team == "interns"
    with pytest.raises(BudgetExceededError):
        engine.query(QUESTION)  # the sync door refuses the same way
    await gw.aclose()
    gw.close()  # and the sync twins' loop


def test_answer_helper_matches_the_mock():
    assert answer_for(QUESTION).startswith("Mock answer to: " + QUESTION)
