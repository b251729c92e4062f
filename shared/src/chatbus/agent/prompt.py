"""Assembling the prompt: system + recalled older turns + recent turns + the new message."""

from __future__ import annotations

from typing import Any

from chatbus.contracts.chat import Turn


def turn_message(turn: Turn) -> dict[str, Any]:
    if turn.role == "summary":
        return {"role": "system", "content": f"Summary of earlier conversation: {turn.content}"}
    return {"role": turn.role, "content": turn.content}


def recalled_block(recalled: list[Turn], recent: list[Turn]) -> dict[str, Any] | None:
    """One system message listing recalled turns that are not already among the recent ones."""
    seen = {(t.role, t.content) for t in recent}
    lines = []
    for t in recalled:
        if (t.role, t.content) in seen:
            continue
        seen.add((t.role, t.content))
        who = "Summary" if t.role == "summary" else ("User" if t.role == "user" else "Assistant")
        lines.append(f"- {who}: {t.content}")
    if not lines:
        return None
    return {
        "role": "system",
        "content": "Relevant earlier messages from this conversation:\n" + "\n".join(lines),
    }


def profile_block(profile: dict[str, str]) -> dict[str, Any] | None:
    """One system message with what the user told us about themselves in any session."""
    if not profile:
        return None
    lines = "\n".join(f"- {k.replace('_', ' ')}: {v}" for k, v in sorted(profile.items()))
    return {"role": "system", "content": f"About this user (from earlier conversations):\n{lines}"}


def build_messages(
    system_prompt: str,
    recalled: list[Turn],
    recent: list[Turn],
    new_message: str,
    profile: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Return (system messages, history messages, the new user message)."""
    system = [{"role": "system", "content": system_prompt}]
    about = profile_block(profile or {})
    if about is not None:
        system.append(about)
    block = recalled_block(recalled, recent)
    if block is not None:
        system.append(block)
    history = [turn_message(t) for t in recent]
    return system, history, {"role": "user", "content": new_message}
