"""User profiles: facts users state become their profile, newer facts supersede older ones,
operators edit them through the gateway, forgetting the user deletes them, tenants stay apart."""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

import pytest
from aiohttp.test_utils import TestClient

from chatbus.bus import Bus
from chatbus.contracts.chat import Turn
from chatbus.contracts.memory import TurnStored, UserProfile
from chatbus.runtime import Runtime
from chatbus_dev.offline_llm import OfflineLLM, Scripted
from chatbus_memory.profile import merge
from chatbus_memory.profile_extract import LLMExtractor, parse_facts, pattern_facts

from . import test_gateway_routes as routes
from .conftest import Indexed

# the same memory service and gateway app as the memory routes' tests
memory_rt = routes.memory_rt
client = routes.client


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


async def say(
    bus: Bus, indexed: Indexed, tenant: str, user: str, session: str, text: str, at: float
) -> None:
    """A user turn arrives the way agents send them (JetStream), and is stored."""
    event = TurnStored(
        event_id=uuid.uuid4().hex,
        tenant_id=tenant,
        session_id=session,
        user_id=user,
        turn=Turn(role="user", content=text, created_at=at, speaker=user),
    )
    await bus.js_publish(event, msg_id=event.event_id)
    await indexed.wait_for([event.event_id], timeout=60)


def test_patterns_read_what_users_say_about_themselves() -> None:
    assert pattern_facts("Hi, my name is Ana Souza and I live in Berlin.") == {
        "name": "Ana Souza",
        "city": "Berlin",
    }
    assert pattern_facts("I moved to Paris last month") == {"city": "Paris"}
    assert pattern_facts("I'm on the Pro plan, please reply in Portuguese.") == {
        "plan": "pro",
        "language": "Portuguese",
    }
    assert pattern_facts("What plan am I on? Where do I live?") == {}
    assert pattern_facts("My sister lives in Rome.") == {}


def test_a_models_answer_is_checked_before_it_becomes_a_fact() -> None:
    answer = 'Sure: {"city": "Lisbon", "Bad Key": "x", "age": 41, "plan": {"x": 1}, "n": " "}'
    assert parse_facts(answer) == {"city": "Lisbon", "age": "41"}
    assert parse_facts("no facts here") == {}


def test_newer_facts_supersede_and_older_ones_become_history() -> None:
    p = UserProfile(user_id="u")
    assert merge(p, {"city": "Berlin"}, at=100.0, source="said")
    assert merge(p, {"city": "Paris"}, at=200.0, source="said")
    assert p.values() == {"city": "Paris"}
    assert [(c.value, c.until, c.replaced_by) for c in p.history] == [("Berlin", 200.0, "Paris")]
    # an old transcript imported later does not undo the newer fact
    assert not merge(p, {"city": "Madrid"}, at=150.0, source="said")
    assert p.values() == {"city": "Paris"}


async def test_stated_facts_build_the_profile_and_a_move_supersedes(
    bus: Bus, memory_rt: Runtime, indexed: Indexed, client: TestClient, user: str
) -> None:
    await say(bus, indexed, "default", user, "s1", "Hi! My name is Ana and I live in Berlin.", 1e9)
    await say(bus, indexed, "default", user, "s2", "Quick update: I moved to Paris.", 1e9 + 86400)

    r = await client.get(f"/api/users/{user}/profile")
    body = await r.json()
    assert r.status == 200, body
    assert body["profile"] == {"name": "Ana", "city": "Paris"}
    assert body["facts"]["city"]["session_id"] == "s2"
    assert [(h["key"], h["value"]) for h in body["history"]] == [("city", "Berlin")]

    # recall across the user's sessions prefers the newer fact
    r = await client.post(
        "/api/memory/search",
        json={"user_id": user, "scope": "user", "query": "where do I live", "limit": 2},
    )
    results = (await r.json())["results"]
    assert "Paris" in results[0]["content"], results


async def test_patch_merges_and_null_removes(client: TestClient, user: str) -> None:
    r = await client.patch(f"/api/users/{user}/profile", json={"city": "Lisbon", "plan": "pro"})
    assert r.status == 200, await r.text()
    r = await client.patch(
        f"/api/users/{user}/profile", json={"plan": "enterprise", "language": "Portuguese"}
    )
    assert (await r.json())["profile"] == {
        "city": "Lisbon",
        "plan": "enterprise",
        "language": "Portuguese",
    }
    r = await client.patch(f"/api/users/{user}/profile", json={"language": None})
    body = await r.json()
    assert body["profile"] == {"city": "Lisbon", "plan": "enterprise"}
    assert body["facts"]["plan"]["source"] == "edited"
    r = await client.get(f"/api/users/{user}/profile")
    assert (await r.json())["profile"] == {"city": "Lisbon", "plan": "enterprise"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"City": "x"}', 422),
        ('{"city": 5}', 422),
        ('{"city": ""}', 422),
        ("{}", 422),
        ('["city"]', 422),
        ('{"city": "' + "x" * 501 + '"}', 422),
        ("{not json", 400),
        ('{"notes": "' + "x" * 40_000 + '"}', 413),
    ],
)
async def test_bad_profile_edits_are_refused(
    client: TestClient, user: str, body: str, status: int
) -> None:
    r = await client.patch(
        f"/api/users/{user}/profile", data=body, headers={"Content-Type": "application/json"}
    )
    assert r.status == status, await r.text()
    assert "error" in await r.json()


async def test_forgetting_the_user_deletes_the_profile(client: TestClient, user: str) -> None:
    r = await client.patch(f"/api/users/{user}/profile", json={"city": "Lisbon"})
    assert r.status == 200
    r = await client.delete(f"/api/users/{user}")
    assert r.status == 200
    r = await client.get(f"/api/users/{user}/profile")
    assert (await r.json())["profile"] == {}


async def test_a_tenant_never_sees_another_tenants_profile(client: TestClient, user: str) -> None:
    a, b = {"X-Test-Tenant": "acme"}, {"X-Test-Tenant": "globex"}
    r = await client.patch(f"/api/users/{user}/profile", json={"plan": "gold"}, headers=a)
    assert r.status == 200
    r = await client.get(f"/api/users/{user}/profile", headers=b)
    assert (await r.json())["profile"] == {}
    r = await client.patch(f"/api/users/{user}/profile", json={"plan": "free"}, headers=b)
    r = await client.delete(f"/api/users/{user}", headers=b)
    r = await client.get(f"/api/users/{user}/profile", headers=a)
    assert (await r.json())["profile"] == {"plan": "gold"}


async def test_concurrent_edits_keep_every_fact(client: TestClient, user: str) -> None:
    rs = await asyncio.gather(
        *(client.patch(f"/api/users/{user}/profile", json={f"fact_{i}": str(i)}) for i in range(8))
    )
    assert all(r.status == 200 for r in rs)
    r = await client.get(f"/api/users/{user}/profile")
    assert (await r.json())["profile"] == {f"fact_{i}": str(i) for i in range(8)}


def test_the_openapi_document_describes_the_profile_routes() -> None:
    from aiohttp import web

    from chatbus.memory_client import BusMemory
    from chatbus_gateway.api.openapi import build_spec
    from chatbus_gateway.api.route_table import ROUTES
    from chatbus_gateway.routes.profile import setup_profile_routes

    app = web.Application()
    setup_profile_routes(app, cast(BusMemory, None))  # documented, never called here
    spec = build_spec(app[ROUTES])
    route = spec["paths"]["/api/users/{id}/profile"]
    assert set(route) == {"get", "patch"}
    ref = route["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["type"] == "object" and schema["maxProperties"] == 50
    assert {"200", "413", "422"} <= set(route["patch"]["responses"])


async def test_the_model_extractor_reads_user_turns_and_falls_back_to_the_patterns(
    fake_llm: tuple[OfflineLLM, str],
) -> None:
    llm, url = fake_llm
    extractor = LLMExtractor(base_url=url, api_key="sk-test", model="m", timeout=10)
    llm.push(Scripted(content='{"city": "Lisbon", "diet": "vegetarian"}'))
    llm.fail_next(500, times=2)  # the call and its one retry
    turns = [
        Turn(role="user", content="I'm vegetarian and I just moved to Lisbon."),
        Turn(role="assistant", content="I live in the cloud."),  # never a fact about the user
        Turn(role="user", content="My name is Ana."),  # the model fails: the patterns answer
    ]
    found = await extractor.extract(turns)
    assert found == [{"city": "Lisbon", "diet": "vegetarian"}, {}, {"name": "Ana"}]
    sent = list(llm.requests)  # the assistant's turn was never sent
    assert len(sent) == 3 and "moved to Lisbon" in sent[0].prompt_text
    tags = [{k.lower(): v for k, v in r.headers.items()}["x-chatbus-agent"] for r in sent]
    assert tags == ["memory"] * 3  # counted as the memory service's spend
